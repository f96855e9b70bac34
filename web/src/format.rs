//! Human-readable sizes, speeds and times.

/// `1536` → `"1.5 KiB"`: one decimal under 10, none from 10. Whole-number
/// arithmetic: formatting floats would add about 5 KB of wasm.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut unit = 0;
    let mut scale: u64 = 1;
    while bytes / scale >= 1024 && unit < UNITS.len() - 1 {
        scale *= 1024;
        unit += 1;
    }
    let (bytes, scale) = (u128::from(bytes), u128::from(scale));
    if unit > 0 && bytes < 10 * scale {
        // Tenths, rounded half up.
        let tenths = (bytes * 10 + scale / 2) / scale;
        format!("{}.{} {}", tenths / 10, tenths % 10, UNITS[unit])
    } else {
        format!("{} {}", (bytes + scale / 2) / scale, UNITS[unit])
    }
}

/// Bytes per second from bytes moved over milliseconds.
pub fn speed(bytes: u64, millis: f64) -> String {
    if millis <= 0.0 {
        return "–".into();
    }
    let per_second = (bytes as f64 * 1000.0 / millis) as u64;
    format!("{}/s", size(per_second))
}

/// Percentage done, 0 to 100.
pub fn percent(done: u64, total: u64) -> u32 {
    if total == 0 {
        return 100;
    }
    ((done.min(total) as f64 / total as f64) * 100.0).round() as u32
}

/// A short badge and a word for a file's kind, from its name's extension
/// (text, not emoji: it reads the same on every system's fonts).
pub fn kind(name: &str) -> (&'static str, &'static str) {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "png" | "jpg" | "jpeg" | "gif" | "webp" | "svg" | "bmp" | "heic" | "avif" => {
            ("IMG", "image")
        }
        "mp3" | "wav" | "ogg" | "flac" | "m4a" | "opus" => ("AUD", "audio"),
        "mp4" | "mkv" | "webm" | "mov" | "avi" => ("VID", "video"),
        "pdf" => ("PDF", "PDF"),
        "txt" | "md" | "doc" | "docx" | "odt" | "rtf" => ("DOC", "document"),
        "csv" | "xls" | "xlsx" | "ods" => ("XLS", "spreadsheet"),
        "ppt" | "pptx" | "odp" | "key" => ("PPT", "presentation"),
        "zip" | "gz" | "tgz" | "tar" | "7z" | "rar" | "xz" | "bz2" | "zst" => ("ZIP", "archive"),
        "rs" | "js" | "ts" | "py" | "c" | "h" | "cpp" | "go" | "java" | "json" | "toml"
        | "yaml" | "yml" | "html" | "css" | "sh" => ("</>", "code"),
        _ => ("FILE", "file"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn sizes_read_like_a_file_manager() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(10 * 1024 * 1024), "10 MiB");
        assert_eq!(size(u64::from(u32::MAX)), "4.0 GiB");
        assert_eq!(size(10 * 1024 - 1), "10.0 KiB");
        assert_eq!(size(200 * 1024 * 1024 + 600 * 1024), "201 MiB");
        assert_eq!(size(u64::MAX), "16777216 TiB");
    }

    #[test]
    fn a_file_kind_comes_from_its_extension() {
        assert_eq!(kind("Photo.JPG").1, "image");
        assert_eq!(kind("report.pdf").1, "PDF");
        assert_eq!(kind("backup.tar.gz").1, "archive");
        assert_eq!(kind("README").1, "file");
        assert_eq!(kind(".bashrc").1, "file");
        assert_eq!(kind("x.").1, "file");
    }

    #[test]
    fn speeds_and_percentages() {
        assert_eq!(speed(2048, 1000.0), "2.0 KiB/s");
        assert_eq!(speed(1, 0.0), "–");
        assert_eq!(percent(0, 0), 100);
        assert_eq!(percent(1, 3), 33);
        assert_eq!(percent(5, 3), 100);
    }
}
