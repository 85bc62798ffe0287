//! The pipeline's dependency rules, checked on the source: the top-level modules of
//! `crates/proxy/src` import each other without cycles, no stage imports a front end, and
//! no front end imports another (ARCHITECTURE.md).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The front ends under `drive/`; `drive/mod.rs` (dispatch) and `drive/setup.rs` (shared
/// stages) may be imported by them.
const DRIVERS: &[&str] = &["stream", "connect", "ssh"];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `["drive", "ssh", "gate"]` for `src/drive/ssh/gate.rs`; `mod.rs` names its folder.
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// Every `crate::a::b` path a file names (outside its tests), as `[a, b]`.
fn crate_paths(text: &str) -> Vec<Vec<String>> {
    let code = text.split("#[cfg(test)]").next().unwrap_or("");
    let mut found = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        let path: Vec<String> = rest
            .split("::")
            .take(2)
            .map(|p| {
                p.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect()
            })
            .take_while(|p: &String| !p.is_empty())
            .collect();
        if !path.is_empty() {
            found.push(path);
        }
    }
    found
}

/// (importing module, imported module, file) for every cross-module import.
fn imports() -> Vec<(Vec<String>, Vec<String>, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut all = Vec::new();
    for file in files {
        let from = module_path(&src, &file);
        if from.is_empty() || from == ["lib"] {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let mut paths = crate_paths(&text);
        // `super::x` inside drive/ names a sibling driver.
        if from.first().is_some_and(|m| m == "drive") {
            for (at, _) in text
                .split("#[cfg(test)]")
                .next()
                .unwrap()
                .match_indices("super::")
            {
                let name: String = text[at + 7..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                paths.push(vec!["drive".into(), name]);
            }
        }
        for to in paths {
            all.push((from.clone(), to, file.display().to_string()));
        }
    }
    all
}

#[test]
fn top_level_modules_import_each_other_without_cycles() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, to, _) in imports() {
        if from[0] != to[0] {
            graph
                .entry(from[0].clone())
                .or_default()
                .insert(to[0].clone());
        }
    }
    // Depth-first search; a node met again on the current path closes a cycle.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if let Some(at) = path.iter().position(|n| n == node) {
            panic!("import cycle: {} -> {node}", path[at..].join(" -> "));
        }
        if !done.insert(node.to_string()) {
            return;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            visit(next, graph, path, done);
        }
        path.pop();
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        visit(node, &graph, &mut Vec::new(), &mut done);
    }
}

#[test]
fn no_stage_imports_a_front_end_and_no_front_end_another() {
    let mut wrong = Vec::new();
    for (from, to, file) in imports() {
        if to.first().is_none_or(|m| m != "drive") {
            continue;
        }
        let target = to.get(1).map(String::as_str);
        match from.first().map(String::as_str) {
            // The gateway wires the front ends in.
            Some("gateway") => {}
            Some("drive") => {
                let own = from.get(1).map(String::as_str);
                if let (Some(own), Some(target)) = (own, target)
                    && DRIVERS.contains(&own)
                    && DRIVERS.contains(&target)
                    && own != target
                {
                    wrong.push(format!("{file}: driver `{own}` imports driver `{target}`"));
                }
            }
            _ => wrong.push(format!(
                "{file}: a stage imports the front ends ({})",
                to.join("::")
            )),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
