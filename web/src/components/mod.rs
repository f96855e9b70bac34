//! The view, one component per region of the page.

mod conversation;
mod files;
mod header;
mod password;
mod sidebar;
mod sign_in;

pub use conversation::Conversation;
pub use files::FilesPanel;
pub use header::Header;
pub use password::{PasswordChange, PasswordForm};
pub use sidebar::Sidebar;
pub use sign_in::{Credentials, SignIn};
