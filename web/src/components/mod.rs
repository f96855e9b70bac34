//! The view, one component per region of the page.

mod conversation;
mod files;
mod header;
mod sidebar;
mod sign_in;

pub use conversation::Conversation;
pub use files::FilesPanel;
pub use header::Header;
pub use sidebar::Sidebar;
pub use sign_in::SignIn;
