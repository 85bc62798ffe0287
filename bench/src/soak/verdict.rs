//! Whether the run passed: no corrupted byte, every kind kept succeeding, every idle
//! connection survived, reloads applied, and neither memory nor descriptors trended up
//! after the warm-up (a least-squares slope over the run's samples); and the summary.

use super::sample::{Sample, Stage};
use super::stats::KindStats;
use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;

/// RSS fails when it grows faster than this per minute after warm-up...
pub const RSS_SLOPE_KIB_PER_MIN: f64 = 512.0;
/// ...and the fitted line rises more than this over the fitted window. The slope alone
/// would fail a one-minute run on noise (allocator arenas settling); the floor alone, a long
/// run on fragmentation that levels off. A leak of 64 bytes per connection at the soak's
/// ~150 connections/s is ~560 KiB/min: a 10-minute run catches it, a 1-minute run catches
/// leaks ten times that.
pub const RSS_GROWTH_FLOOR_KIB: f64 = 4096.0;
/// Descriptors: the same two conditions...
pub const FD_SLOPE_PER_MIN: f64 = 10.0;
pub const FD_GROWTH_FLOOR: f64 = 24.0;
/// ...and, with the churn paused and only the idle connections open, the count must come
/// back to within this of the count at warm-up end (pooled tunnel and authorizer
/// connections may differ by a few).
pub const FD_QUIET_TOLERANCE: i64 = 16;
/// Errors (not refusals the authorizer asked for) above this share of a kind's connections.
pub const ERROR_SHARE: f64 = 0.02;

/// A least-squares line through (minutes, value).
#[derive(Debug, Clone, Copy, Default)]
pub struct Fit {
    pub slope_per_min: f64,
    pub intercept: f64,
    /// First and last time fitted, minutes.
    pub from: f64,
    pub to: f64,
}

impl Fit {
    pub fn of(points: &[(f64, f64)]) -> Fit {
        let n = points.len() as f64;
        if points.len() < 2 {
            return Fit::default();
        }
        let (mx, my) = points
            .iter()
            .fold((0.0, 0.0), |(x, y), p| (x + p.0 / n, y + p.1 / n));
        let sxy: f64 = points.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
        let sxx: f64 = points.iter().map(|(x, _)| (x - mx) * (x - mx)).sum();
        let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
        Fit {
            slope_per_min: slope,
            intercept: my - slope * mx,
            from: points[0].0,
            to: points[points.len() - 1].0,
        }
    }

    pub fn at(&self, minutes: f64) -> f64 {
        self.intercept + self.slope_per_min * minutes
    }

    /// How much the fitted line rises over the fitted window.
    pub fn growth(&self) -> f64 {
        self.slope_per_min * (self.to - self.from)
    }
}

/// The gateway with the churn paused: only the idle connections open.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet {
    pub t: f64,
    pub rss_kib: u64,
    pub fds: u64,
    pub threads: u64,
    pub active: f64,
}

/// What the verdict reads besides the samples.
pub struct Run<'a> {
    pub samples: &'a [Sample],
    pub stats: &'a [KindStats],
    pub warm: Quiet,
    pub end: Quiet,
    pub stalled: Vec<String>,
    pub reloads_sent: u64,
    pub reloads_refused: u64,
    pub flaps: u64,
}

pub fn fits(samples: &[Sample]) -> (Fit, Fit) {
    let run: Vec<&Sample> = samples.iter().filter(|s| s.stage == Stage::Run).collect();
    let rss: Vec<(f64, f64)> = run.iter().map(|s| (s.t / 60.0, s.rss_kib as f64)).collect();
    let fds: Vec<(f64, f64)> = run.iter().map(|s| (s.t / 60.0, s.fds as f64)).collect();
    (Fit::of(&rss), Fit::of(&fds))
}

/// Every reason the run failed (none: it passed).
pub fn failures(run: &Run) -> Vec<String> {
    let mut failed = run.stalled.clone();
    for s in run.stats {
        let name = s.kind.name();
        let (ok, errors) = (s.ok.load(Relaxed), s.errors.load(Relaxed));
        if s.corrupted.load(Relaxed) > 0 {
            failed.push(format!(
                "{name}: {} connections corrupted bytes",
                s.corrupted.load(Relaxed)
            ));
        }
        if ok == 0 {
            failed.push(format!("{name}: no connection succeeded"));
        }
        if errors as f64 > ERROR_SHARE * s.attempts().max(1) as f64 {
            failed.push(format!(
                "{name}: {errors} errors of {} connections",
                s.attempts()
            ));
        }
        if s.idle_lost.load(Relaxed) > 0 {
            failed.push(format!(
                "{name}: {} idle connections lost",
                s.idle_lost.load(Relaxed)
            ));
        }
    }
    let last = run.samples.last();
    let applied = last.map_or(0.0, |s| s.reloads_ok) as u64;
    if run.reloads_refused > 0
        || last.is_some_and(|s| s.reloads_failed > 0.0)
        || applied < run.reloads_sent
    {
        failed.push(format!(
            "reloads: {} sent, {applied} applied, {} refused",
            run.reloads_sent, run.reloads_refused
        ));
    }
    let (rss, fds) = fits(run.samples);
    if rss.slope_per_min > RSS_SLOPE_KIB_PER_MIN && rss.growth() > RSS_GROWTH_FLOOR_KIB {
        failed.push(format!(
            "RSS trends up after warm-up: {:+.0} KiB/min, {:+.0} KiB over the run (limits {RSS_SLOPE_KIB_PER_MIN} KiB/min and {RSS_GROWTH_FLOOR_KIB} KiB)",
            rss.slope_per_min,
            rss.growth()
        ));
    }
    if fds.slope_per_min > FD_SLOPE_PER_MIN && fds.growth() > FD_GROWTH_FLOOR {
        failed.push(format!(
            "descriptors trend up after warm-up: {:+.1}/min, {:+.0} over the run (limits {FD_SLOPE_PER_MIN}/min and {FD_GROWTH_FLOOR})",
            fds.slope_per_min,
            fds.growth()
        ));
    }
    let fd_delta = run.end.fds as i64 - run.warm.fds as i64;
    if fd_delta > FD_QUIET_TOLERANCE {
        failed.push(format!(
            "descriptors with only the idle connections open: {} at warm-up end, {} at the end ({fd_delta:+}, tolerance {FD_QUIET_TOLERANCE})",
            run.warm.fds, run.end.fds
        ));
    }
    failed
}

/// The summary printed at the end (and written beside the CSV).
pub fn summary(run: &Run, failed: &[String]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "kind     ok      refused errors corrupted idle held/lost  MiB moved  authorization"
    );
    for s in run.stats {
        let _ = writeln!(
            out,
            "{:<8} {:<7} {:<7} {:<6} {:<9} {:>4}/{:<4}       {:>9.1}  {}",
            s.kind.name(),
            s.ok.load(Relaxed),
            s.refused.load(Relaxed),
            s.errors.load(Relaxed),
            s.corrupted.load(Relaxed),
            s.idle_held.load(Relaxed),
            s.idle_lost.load(Relaxed),
            s.bytes.load(Relaxed) as f64 / 1048576.0,
            super::drivers::authorized(s.kind)
        );
        for message in s.messages() {
            let _ = writeln!(out, "         {message}");
        }
    }
    let (rss, fds) = fits(run.samples);
    let last = run.samples.last();
    let _ = writeln!(
        out,
        "reloads: {} sent ({} refused), {} applied by the gateway; authorizer flaps: {}",
        run.reloads_sent,
        run.reloads_refused,
        last.map_or(0.0, |s| s.reloads_ok),
        run.flaps
    );
    let _ = writeln!(
        out,
        "quiet (idle connections only, {} active): warm-up end t={:.0}s RSS {:.1} MiB, {} fds, {} threads; end t={:.0}s RSS {:.1} MiB, {} fds, {} threads",
        run.warm.active,
        run.warm.t,
        run.warm.rss_kib as f64 / 1024.0,
        run.warm.fds,
        run.warm.threads,
        run.end.t,
        run.end.rss_kib as f64 / 1024.0,
        run.end.fds,
        run.end.threads
    );
    let _ = writeln!(
        out,
        "after warm-up ({:.1} min fitted): RSS {:+.0} KiB/min ({:+.0} KiB fitted; limits {RSS_SLOPE_KIB_PER_MIN} KiB/min and {RSS_GROWTH_FLOOR_KIB} KiB), fds {:+.2}/min ({:+.1} fitted; limits {FD_SLOPE_PER_MIN}/min and {FD_GROWTH_FLOOR})",
        rss.to - rss.from,
        rss.slope_per_min,
        rss.growth(),
        fds.slope_per_min,
        fds.growth()
    );
    match failed.is_empty() {
        true => out.push_str("PASS\n"),
        false => {
            out.push_str("FAIL\n");
            for f in failed {
                let _ = writeln!(out, "  - {f}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::Fit;

    #[test]
    fn a_line_fits_exactly_and_noise_around_a_flat_line_has_no_slope() {
        let line: Vec<(f64, f64)> = (0..60)
            .map(|i| (i as f64 / 60.0, 100.0 + 30.0 * i as f64 / 60.0))
            .collect();
        let fit = Fit::of(&line);
        assert!((fit.slope_per_min - 30.0).abs() < 1e-9);
        assert!((fit.growth() - 30.0 * 59.0 / 60.0).abs() < 1e-9);
        let flat: Vec<(f64, f64)> = (0..600)
            .map(|i| (i as f64 / 60.0, 100.0 + [3.0, -3.0][i % 2]))
            .collect();
        assert!(Fit::of(&flat).slope_per_min.abs() < 0.1);
    }
}
