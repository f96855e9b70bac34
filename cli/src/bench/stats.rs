//! Latency histograms, process figures from /proc, and the result table.

use hdrhistogram::Histogram;

/// Memory and CPU of a process, read from /proc.
#[derive(Debug, Clone, Copy)]
pub struct ProcessStats {
    /// Resident memory now, KiB.
    pub rss_kib: u64,
    /// Peak resident memory, KiB.
    pub peak_rss_kib: u64,
    /// User plus system CPU time, its own and its waited-for children's, seconds.
    pub cpu_seconds: f64,
}

impl ProcessStats {
    /// Reads the figures of process `pid`, if it exists.
    pub fn read(pid: u32) -> Option<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |name: &str| -> Option<u64> {
            status
                .lines()
                .find(|l| l.starts_with(name))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name, which is in parentheses.
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
        // utime, stime, cutime and cstime are fields 14 to 17 of the whole
        // line, in clock ticks of 1/100 s on Linux. The children's times
        // count too: websockify, for one, serves each connection in a
        // child process it waits for.
        let cpu_seconds = (ticks(11)? + ticks(12)? + ticks(13)? + ticks(14)?) / 100.0;
        Some(Self {
            rss_kib: field("VmRSS:")?,
            peak_rss_kib: field("VmHWM:")?,
            cpu_seconds,
        })
    }
}

/// A latency histogram in microseconds.
pub fn histogram() -> Histogram<u64> {
    // Constant, valid bounds: 1 µs to 60 s, 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// `p50 / p99 / max` of a histogram in ms.
pub fn latencies(h: &Histogram<u64>) -> String {
    let ms = |us: u64| us as f64 / 1000.0;
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.99)),
        ms(h.max())
    )
}

/// Rows of `metric | value`.
#[derive(Debug, Default)]
pub struct Table {
    title: String,
    rows: Vec<(String, String)>,
}

impl Table {
    /// An empty table.
    pub fn new(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            rows: Vec::new(),
        }
    }

    /// Adds a row.
    pub fn row(&mut self, metric: &str, value: impl Into<String>) {
        self.rows.push((metric.to_owned(), value.into()));
    }

    /// Prints it as a Markdown table.
    pub fn print(&self) {
        println!("{}", self.title);
        println!();
        println!("| metric | value |");
        println!("|---|---|");
        for (m, v) in &self.rows {
            println!("| {m} | {v} |");
        }
    }
}
