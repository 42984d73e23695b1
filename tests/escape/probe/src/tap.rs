//! TAP output. Results are printed as each vector finishes, so a probe killed by the
//! driver's timeout still leaves the lines it got through.

use std::io::Write;

/// What one vector found.
pub struct Outcome {
    /// True when the container is defended against the vector (`ok`).
    pub defended: bool,
    /// "<what was tried> -> <what happened>", on the TAP line itself.
    pub summary: String,
    /// Extra facts, printed as `# ` lines after the TAP line.
    pub details: Vec<String>,
}

impl Outcome {
    pub fn defended(summary: impl Into<String>) -> Self {
        Outcome {
            defended: true,
            summary: summary.into(),
            details: Vec::new(),
        }
    }

    pub fn open(summary: impl Into<String>) -> Self {
        Outcome {
            defended: false,
            summary: summary.into(),
            details: Vec::new(),
        }
    }

    pub fn new(defended: bool, summary: impl Into<String>) -> Self {
        Outcome {
            defended,
            summary: summary.into(),
            details: Vec::new(),
        }
    }

    pub fn with(mut self, details: Vec<String>) -> Self {
        self.details.extend(details);
        self
    }

    pub fn detail(mut self, line: impl Into<String>) -> Self {
        self.details.push(line.into());
        self
    }
}

/// Counts and prints results.
#[derive(Default)]
pub struct Tap {
    n: usize,
    failed: usize,
}

impl Tap {
    pub fn comment(&self, line: &str) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "# {line}");
        let _ = out.flush();
    }

    pub fn report(&mut self, id: &str, outcome: Outcome) {
        self.n += 1;
        if !outcome.defended {
            self.failed += 1;
        }
        let status = if outcome.defended { "ok" } else { "not ok" };
        // A TAP line must stay one line, whatever an errno text or a path contains.
        let summary = outcome.summary.replace('\n', " ");
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{status} {} - {id}: {summary}", self.n);
        for d in outcome.details {
            for l in d.lines() {
                let _ = writeln!(out, "#   {l}");
            }
        }
        let _ = out.flush();
    }

    /// Prints the plan and the summary line; returns the process exit status.
    pub fn finish(self) -> i32 {
        let passed = self.n - self.failed;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "1..{}", self.n);
        let _ = writeln!(out, "{passed} passed, {} failed", self.failed);
        let _ = out.flush();
        if self.failed == 0 {
            0
        } else {
            1
        }
    }
}
