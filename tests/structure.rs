//! The shape of the source tree, checked: no Rust file over 800 lines (tests included), and
//! no import circle between the files of a crate (`a.rs` names something of `b.rs` and
//! `b.rs`, through any path, names something of `a.rs`). A parent depends on the children
//! it declares; a file naming its own ancestors (`super::X` from a child) is no edge, since
//! the parent declares the child. What counts as a name is a path in code, `crate::`,
//! `super::`, `self::` or a child module's name, outside comments, string literals and
//! `#[cfg(test)] mod tests`; `crate::Item` re-exported by the crate root names the module
//! that defines it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 800;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `dir`, build output and hidden directories left out.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if p.is_dir() {
            if name != "target" && !name.starts_with('.') {
                rust_files(&p, out);
            }
        } else if name.ends_with(".rs") {
            out.push(p);
        }
    }
}

#[test]
fn no_rust_file_is_over_800_lines() {
    let mut files = Vec::new();
    rust_files(&root(), &mut files);
    assert!(
        files.len() > 100,
        "the walk found the tree: {}",
        files.len()
    );
    let mut long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(f).ok()?.lines().count();
            (n > MAX_LINES).then(|| format!("{} ({n} lines)", f.display()))
        })
        .collect();
    long.sort();
    assert!(
        long.is_empty(),
        "files over {MAX_LINES} lines:\n  {}",
        long.join("\n  ")
    );
}

/// A module's path inside its crate (`["pool", "pipelined", "lane"]`), from its file.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = rel
        .with_extension("")
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The code of a file, without comments, string and character literals, and its unit
/// tests.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 2;
            }
            b'r' if b.get(i + 1) == Some(&b'#') || b.get(i + 1) == Some(&b'"') => {
                // A raw string: r"…", r#"…"#.
                let mut j = i + 1;
                let mut hashes = 0;
                while b.get(j) == Some(&b'#') {
                    hashes += 1;
                    j += 1;
                }
                if b.get(j) != Some(&b'"') {
                    out.push('r');
                    i += 1;
                    continue;
                }
                j += 1;
                let close: Vec<u8> = std::iter::once(b'"')
                    .chain(std::iter::repeat_n(b'#', hashes))
                    .collect();
                while j < b.len() && !b[j..].starts_with(&close) {
                    j += 1;
                }
                i = j + close.len();
                out.push_str("\"\"");
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                out.push_str("\"\"");
            }
            b'\'' if b.get(i + 2) == Some(&b'\'') || (b.get(i + 1) == Some(&b'\\')) => {
                // A character literal ('a', '\n', '\''), not a lifetime.
                let mut j = i + 1;
                if b[j] == b'\\' {
                    j += 2;
                }
                while j < b.len() && b[j] != b'\'' {
                    j += 1;
                }
                i = j + 1;
                out.push_str("' '");
            }
            c => {
                out.push(c as char);
                i += 1;
            }
        }
    }
    out
}

/// The paths in `code`: `a::b::c` sequences whose first segment may name a module.
fn paths(code: &str) -> Vec<Vec<&str>> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    while i < b.len() {
        if !ident(b[i]) || (i > 0 && (ident(b[i - 1]) || b[i - 1] == b':')) {
            i += 1;
            continue;
        }
        let mut segs = Vec::new();
        let mut j = i;
        loop {
            let s = j;
            while j < b.len() && ident(b[j]) {
                j += 1;
            }
            segs.push(&code[s..j]);
            if code[j..].starts_with("::") && b.get(j + 2).is_some_and(|&c| ident(c)) {
                j += 2;
            } else {
                break;
            }
        }
        if segs.len() > 1 {
            out.push(segs);
        }
        i = j.max(i + 1);
    }
    out
}

/// The module a path names (the longest prefix that is one), seen from `from`.
fn resolve(modules: &BTreeSet<Vec<String>>, from: &[String], segs: &[&str]) -> Option<Vec<String>> {
    let (mut base, rest): (Vec<String>, &[&str]) = match segs[0] {
        "crate" => (Vec::new(), &segs[1..]),
        "self" => (from.to_vec(), &segs[1..]),
        "super" => {
            let mut base = from.to_vec();
            let mut k = 0;
            while segs.get(k) == Some(&"super") {
                base.pop();
                k += 1;
            }
            (base, &segs[k..])
        }
        child => {
            let mut m = from.to_vec();
            m.push(child.to_string());
            if !modules.contains(&m) {
                return None;
            }
            (from.to_vec(), segs)
        }
    };
    let mut best = None;
    for s in rest {
        base.push((*s).to_string());
        if modules.contains(&base) {
            best = Some(base.clone());
        }
    }
    best
}

/// The import graph of the crate whose sources are under `src`: module -> modules named.
fn graph(src: &Path) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeMap<Vec<String>, PathBuf> =
        files.into_iter().map(|f| (module_of(src, &f), f)).collect();
    let names: BTreeSet<Vec<String>> = modules.keys().cloned().collect();
    // What the crate root re-exports (`pub use pool::{Pool, ...}`): `crate::Pool` names
    // the module that defines it, not the root.
    let root_file = modules.get(&Vec::new()).expect("lib.rs or main.rs");
    let reexports = reexports(
        &code_of(&std::fs::read_to_string(root_file).unwrap()),
        &names,
    );
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (m, f) in &modules {
        let code = code_of(&std::fs::read_to_string(f).unwrap());
        let out = edges.entry(m.clone()).or_default();
        for p in paths(&code) {
            let t = match resolve(&names, m, &p) {
                Some(t) if t.is_empty() && p[0] == "crate" => reexports.get(p[1]).cloned(),
                t => t,
            };
            if let Some(t) = t {
                // Naming an ancestor (or itself) is no edge.
                if !m.starts_with(&t) {
                    out.insert(t);
                }
            }
        }
        // A parent depends on the children it declares (`mod child;`).
        for line in code.lines() {
            let l = line.trim_start();
            let l = l
                .strip_prefix("pub(crate) ")
                .or_else(|| l.strip_prefix("pub "))
                .unwrap_or(l);
            if let Some(name) = l.strip_prefix("mod ").and_then(|r| r.strip_suffix(';')) {
                let mut child = m.clone();
                child.push(name.trim().to_string());
                if names.contains(&child) {
                    out.insert(child);
                }
            }
        }
    }
    edges
}

/// The crate root's `pub use module::{Item, ...}` and `pub use module::Item`: item -> module.
fn reexports(code: &str, names: &BTreeSet<Vec<String>>) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for stmt in code.split(';') {
        let s = stmt.trim();
        let Some(rest) = s
            .strip_prefix("pub use ")
            .or_else(|| s.strip_prefix("pub(crate) use "))
        else {
            continue;
        };
        let (module, items) = match rest.split_once("::{") {
            Some((m, items)) => (m, items.trim_end_matches('}').to_string()),
            None => match rest.rsplit_once("::") {
                Some((m, item)) => (m, item.to_string()),
                None => continue,
            },
        };
        let module: Vec<String> = module.split("::").map(|x| x.trim().to_string()).collect();
        if !names.contains(&module) {
            continue;
        }
        for item in items.split(',') {
            let item = item.split(" as ").last().unwrap_or("").trim();
            if !item.is_empty() {
                out.insert(item.to_string(), module.clone());
            }
        }
    }
    out
}

/// The strongly connected components of more than one module (Tarjan).
fn circles(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<Vec<String>> {
    struct T<'a> {
        edges: &'a BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        index: BTreeMap<&'a [String], usize>,
        low: BTreeMap<&'a [String], usize>,
        stack: Vec<&'a [String]>,
        on: BTreeSet<&'a [String]>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a [String]) {
        t.index.insert(v, t.next);
        t.low.insert(v, t.next);
        t.next += 1;
        t.stack.push(v);
        t.on.insert(v);
        if let Some(ws) = t.edges.get(v) {
            for w in ws {
                let w: &[String] = w;
                if !t.index.contains_key(w) {
                    visit(t, w);
                    let l = t.low[w].min(t.low[v]);
                    t.low.insert(v, l);
                } else if t.on.contains(w) {
                    let l = t.index[w].min(t.low[v]);
                    t.low.insert(v, l);
                }
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                comp.push(if w.is_empty() {
                    "lib".to_string()
                } else {
                    w.join("/")
                });
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !t.index.contains_key(v.as_slice()) {
            visit(&mut t, v);
        }
    }
    t.out
}

#[test]
fn the_checker_finds_a_circle() {
    // Two modules naming each other, and a third naming one of them.
    let m = |s: &str| -> Vec<String> { s.split('/').map(str::to_string).collect() };
    let mut edges = BTreeMap::new();
    edges.insert(m("a"), BTreeSet::from([m("b")]));
    edges.insert(m("b"), BTreeSet::from([m("a")]));
    edges.insert(m("c"), BTreeSet::from([m("a")]));
    assert_eq!(
        circles(&edges),
        vec![vec!["a".to_string(), "b".to_string()]]
    );
    // And reads paths as code, not comments or strings.
    let code = code_of("use super::lane::X; // crate::b::Y\nlet s = \"crate::c::Z\";");
    let found: Vec<String> = paths(&code).iter().map(|p| p.join("::")).collect();
    assert_eq!(found, ["super::lane::X"]);
}

#[test]
fn no_import_circle_in_any_crate() {
    let mut found = Vec::new();
    for src in ["src", "protocol/src", "server/src", "testkit/src"] {
        let edges = graph(&root().join(src));
        assert!(
            edges.len() > 3,
            "{src}: the graph was read ({} modules)",
            edges.len()
        );
        for c in circles(&edges) {
            found.push(format!("{src}: {}", c.join(" <-> ")));
        }
    }
    assert!(
        found.is_empty(),
        "import circles:\n  {}",
        found.join("\n  ")
    );
}

/// The protocol crate (`protocol/`) depends on nothing of wirepool: no wirepool crate among
/// its dependencies, and no `wirepool` path in its code, so that the fuzz targets and
/// anything else can build against it alone.
#[test]
fn the_protocol_crate_imports_nothing_of_wirepool() {
    let manifest = std::fs::read_to_string(root().join("protocol/Cargo.toml")).unwrap();
    let mut section = "";
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            section = line;
        } else if section.contains("dependencies") && !line.starts_with('#') {
            assert!(
                !line.starts_with("wirepool"),
                "protocol/Cargo.toml {section}: {line}"
            );
        }
    }
    let mut files = Vec::new();
    rust_files(&root().join("protocol/src"), &mut files);
    assert!(
        files.len() > 5,
        "the walk found the protocol crate: {}",
        files.len()
    );
    for f in &files {
        let code = code_of(&std::fs::read_to_string(f).unwrap());
        for p in paths(&code) {
            assert!(
                !p[0].starts_with("wirepool"),
                "{}: {}",
                f.display(),
                p.join("::")
            );
        }
        assert!(!code.contains("wirepool::"), "{}", f.display());
    }
}

/// Every public async function of the library says what happens when its future is
/// dropped (a `# Cancel safety` section, or "Cancel-safe").
#[test]
fn every_public_async_fn_says_what_a_drop_does() {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    let mut silent = Vec::new();
    let mut seen = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            let t = l.trim_start();
            let future_fn = t.starts_with("pub async fn ")
                || (t.starts_with("pub fn ") && t.contains("-> impl") && t.contains("Future"));
            if !future_fn {
                continue;
            }
            seen += 1;
            let doc: Vec<&str> = lines[..i]
                .iter()
                .rev()
                .map(|l| l.trim_start())
                .take_while(|l| l.starts_with("///") || l.starts_with("#["))
                .collect();
            if !doc
                .iter()
                .any(|d| d.contains("# Cancel safety") || d.contains("Cancel-safe"))
            {
                silent.push(format!("{}:{}: {}", f.display(), i + 1, t));
            }
        }
    }
    assert!(
        seen > 30,
        "the walk found the public async functions: {seen}"
    );
    assert!(
        silent.is_empty(),
        "public async functions that do not say what a drop does:\n  {}",
        silent.join("\n  ")
    );
}
