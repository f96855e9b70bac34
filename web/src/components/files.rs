//! The Files panel: shared files, uploads and downloads with progress.

use web_sys::HtmlInputElement;
use yew::prelude::*;

use crate::format;
use crate::state::{State, TransferStatus};

/// Properties of [`FilesPanel`].
#[derive(Properties, PartialEq)]
pub struct Props {
    /// The app state.
    pub state: UseReducerHandle<State>,
    /// Uploads picked or dropped files.
    pub on_files: Callback<Vec<web_sys::File>>,
    /// Downloads a file.
    pub on_download: Callback<u64>,
    /// Cancels a transfer.
    pub on_cancel: Callback<u64>,
    /// Removes a finished transfer from the list.
    pub on_dismiss: Callback<u64>,
    /// Back to the conversation list (on a phone).
    pub on_back: Callback<()>,
}

/// The right column.
#[function_component]
pub fn FilesPanel(props: &Props) -> Html {
    let state = &props.state;
    let onchange = {
        let on_files = props.on_files.clone();
        Callback::from(move |e: Event| {
            let input = e.target_unchecked_into::<HtmlInputElement>();
            if let Some(list) = input.files() {
                on_files.emit(crate::app::files_of(&list));
            }
            input.set_value("");
        })
    };
    let empty = state.files.is_empty();
    let files = state.files.iter().rev().map(|(&id, f)| {
        let on_download = props.on_download.clone();
        let kind = format::kind(&f.name);
        html! {
            <li class="file" data-testid="file" data-file-name={f.name.clone()}>
                <span class="kind" data-kind={kind.1} role="img" aria-label={kind.1} title={kind.1}>{ kind.0 }</span>
                <span class="name" title={f.name.clone()}>{ f.name.clone() }</span>
                <span class="size">{ format::size(u64::from(f.size)) }</span>
                <button type="button" data-testid="download" aria-label={format!("Download {}", f.name)}
                    onclick={move |_| on_download.emit(id)}>{ "Download" }</button>
            </li>
        }
    });
    let transfers = state.transfers.iter().map(|(&id, t)| {
        let percent = format::percent(t.done, t.total);
        let elapsed = t.updated_ms - t.started_ms;
        let (status, action) = match &t.status {
            TransferStatus::Active => {
                let on_cancel = props.on_cancel.clone();
                (
                    format!("{} · {}", format::size(t.done), format::speed(t.done, elapsed)),
                    html! {
                        <button type="button" class="link" data-testid="cancel"
                            aria-label={format!("Cancel {}", t.name)}
                            onclick={move |_| on_cancel.emit(id)}>{ "Cancel" }</button>
                    },
                )
            }
            other => {
                let on_dismiss = props.on_dismiss.clone();
                let text = match other {
                    TransferStatus::Done => format!("done · {}", format::speed(t.total, elapsed)),
                    TransferStatus::Stopped(why) => why.clone(),
                    TransferStatus::Active => String::new(),
                };
                (
                    text,
                    html! {
                        <button type="button" class="link" data-testid="dismiss"
                            aria-label={format!("Remove {} from the list", t.name)}
                            onclick={move |_| on_dismiss.emit(id)}>{ "×" }</button>
                    },
                )
            }
        };
        let state_attr = match t.status {
            TransferStatus::Active => "active",
            TransferStatus::Done => "done",
            TransferStatus::Stopped(_) => "stopped",
        };
        html! {
            <li class="transfer" data-testid="transfer" data-state={state_attr} data-name={t.name.clone()}>
                <span class="name">{ if t.upload { "↑ " } else { "↓ " } }{ t.name.clone() }</span>
                <progress data-testid="progress" max="100" value={percent.to_string()}
                    aria-label={format!("{} {percent}%", t.name)}></progress>
                <span class="status">{ status }</span>
                { action }
            </li>
        }
    });
    html! {
        <section class="files-panel" data-testid="files-panel" aria-labelledby="files-title">
            <div class="pane-head">
                <button type="button" class="back phone-only" data-testid="files-back"
                    aria-label="Back to conversations" onclick={props.on_back.reform(|_| ())}>{ "‹" }</button>
                <h2 id="files-title">{ "Files" }</h2>
            </div>
            <label class="dropzone" data-testid="dropzone">
                <span class="drop-icon" aria-hidden="true">{ "⬆" }</span>
                <span class="drop-words">{ "Drop files here or anywhere on the page" }</span>
                <span class="drop-button">{ "Choose files" }</span>
                // Covers the zone, unseen: a click anywhere on it picks files.
                <input type="file" multiple=true data-testid="upload-input" aria-label="Upload files" {onchange} />
            </label>
            <ul class="transfers" aria-label="Transfers">{ for transfers }</ul>
            <ul class="files" aria-label="Shared files">{ for files }</ul>
            if empty { <p class="hint">{ "No shared files yet." }</p> }
        </section>
    }
}
