//! Each family's HELP text, from the table in docs/metrics.md: the page operators read and
//! what `/metrics` says about each family cannot drift apart.

/// docs/metrics.md, built in.
const PAGE: &str = include_str!("../../../docs/metrics.md");

/// (family name, HELP text) for every family the page lists.
pub fn families() -> Vec<(String, String)> {
    PAGE.lines().filter_map(row).flat_map(expand).collect()
}

/// A table row naming families: its names cell and its meaning (the last cell).
fn row(line: &str) -> Option<(String, String)> {
    // `\|` is a bar inside a cell, not between cells.
    let line = line.replace("\\|", "\u{0}");
    let inner = line.strip_prefix('|')?.strip_suffix('|')?;
    let cells: Vec<&str> = inner.split('|').map(str::trim).collect();
    let names = cells.first()?;
    let family = names.starts_with("`causeway_") || names.starts_with("`process_");
    if !family || cells.len() < 4 {
        return None;
    }
    let meaning = cells[cells.len() - 1].replace('\u{0}', "|");
    Some((names.to_string(), plain(&meaning)))
}

/// `a`, `b` and histogram rows (`x_bucket`, `_sum`, `_count`): every family named.
fn expand((names, help): (String, String)) -> Vec<(String, String)> {
    let mut families = Vec::new();
    let mut stem = String::new();
    for name in names.split(", ").map(|n| n.trim_matches('`')) {
        let family = match name.strip_prefix('_') {
            Some(suffix) => format!("{stem}_{suffix}"),
            None => {
                stem = name.rsplit_once('_').map_or(name, |(s, _)| s).to_string();
                name.to_string()
            }
        };
        families.push((family, help.clone()));
    }
    families
}

/// A meaning cell as plain text: markdown links dropped, code marks and escapes removed.
fn plain(cell: &str) -> String {
    let mut text = cell.trim().replace('`', "");
    while let Some(start) = text.find(" ([") {
        let Some(end) = text[start..].find("))").map(|e| start + e + 2) else {
            break;
        };
        text.replace_range(start..end, "");
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_row_gives_its_families_a_help_text() {
        let families = super::families();
        let help = |name: &str| {
            families
                .iter()
                .find(|(f, _)| f == name)
                .map(|(_, h)| h.as_str())
        };
        assert_eq!(help("causeway_draining"), Some("1 while draining"));
        assert_eq!(
            help("causeway_ssh_password_checks_peak"),
            help("causeway_ssh_password_checks_running")
        );
        assert_eq!(
            help("causeway_fix_sessions_total"),
            Some("FIX sessions a route took")
        );
        assert!(help("causeway_authz_check_duration_seconds").is_some());
        assert!(
            families
                .iter()
                .all(|(_, h)| !h.is_empty() && !h.contains('\n'))
        );
    }
}
