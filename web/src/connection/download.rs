//! A download assembled as a list of parts (in the browser, `Blob`s)
//! rather than one buffer: the app's memory holds at most one part's bytes,
//! whatever size the server announced, and the browser keeps the parts
//! (on disk when they are large).

/// Bytes gathered before they become one part.
pub const PART_SIZE: usize = 1 << 20;

/// One download's parts, and the bytes not yet made into a part.
///
/// `P` is the part type: a `web_sys::Blob` in the app, bytes in the tests.
#[derive(Debug)]
pub struct Assembly<P> {
    /// The file name to save it under.
    pub name: String,
    parts: Vec<P>,
    pending: Vec<u8>,
}

impl<P> Assembly<P> {
    /// An empty download of a file called `name`.
    pub fn new(name: String) -> Self {
        Self {
            name,
            parts: Vec::new(),
            pending: Vec::new(),
        }
    }

    /// Appends the next bytes; each full [`PART_SIZE`] becomes a part made
    /// by `make_part`, whose error (the browser could not hold it) ends the
    /// download.
    pub fn push(
        &mut self,
        data: &[u8],
        make_part: impl Fn(&[u8]) -> Result<P, String>,
    ) -> Result<(), String> {
        if self.pending.is_empty() {
            // Grows to a part at most, never to what the server said.
            self.pending
                .reserve(data.len().max(PART_SIZE.min(64 * 1024)));
        }
        self.pending.extend_from_slice(data);
        if self.pending.len() >= PART_SIZE {
            self.parts.push(make_part(&self.pending)?);
            self.pending = Vec::new();
        }
        Ok(())
    }

    /// Every part, the last bytes included.
    pub fn finish(
        mut self,
        make_part: impl Fn(&[u8]) -> Result<P, String>,
    ) -> Result<Vec<P>, String> {
        if !self.pending.is_empty() || self.parts.is_empty() {
            self.parts.push(make_part(&self.pending)?);
        }
        Ok(self.parts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn bytes(data: &[u8]) -> Result<Vec<u8>, String> {
        Ok(data.to_vec())
    }

    #[test]
    fn parts_hold_every_byte_in_order_and_memory_holds_one_part_at_most() {
        let mut a = Assembly::new("f".into());
        let chunk: Vec<u8> = (0..=255).collect();
        let chunks = PART_SIZE / 256 * 2 + 3;
        for _ in 0..chunks {
            a.push(&chunk, bytes).unwrap();
            assert!(a.pending.len() < PART_SIZE);
        }
        let parts = a.finish(bytes).unwrap();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0].len(), PART_SIZE);
        assert_eq!(parts[2].len(), 3 * 256);
        let all: Vec<u8> = parts.concat();
        assert!(all.chunks(256).all(|c| c == chunk.as_slice()));
    }

    #[test]
    fn an_empty_file_is_one_empty_part() {
        let a = Assembly::<Vec<u8>>::new("empty".into());
        assert_eq!(a.finish(bytes).unwrap(), vec![Vec::<u8>::new()]);
    }

    #[test]
    fn a_part_the_browser_cannot_hold_ends_the_download_with_its_reason() {
        let mut a = Assembly::new("big".into());
        let refuse = |_: &[u8]| -> Result<(), String> { Err("out of memory".into()) };
        let big = vec![0u8; PART_SIZE];
        assert_eq!(a.push(&big, refuse), Err("out of memory".into()));
    }
}
