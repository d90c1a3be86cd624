//! The layers of `crates/stackgate/src`, checked from its `use crate::…` lines: each module
//! imports only from its own layer or the layers below, and no two files import each other,
//! directly or around a longer circle. ARCHITECTURE.md describes the layers.
//!
//! The checker's pieces (reading use lines, resolving `super::`, finding circles) are tested on
//! small strings below, with a deliberate bad import, so the check itself is known to bite.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Bottom to top.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Layer {
    /// Time, processes and their owners, terminal formatting, errors, TLS and HTTP: nothing of
    /// the harness's own model.
    Foundation,
    /// What the user asked for (flags, `harness.toml`), the state store, the report's checks.
    Model,
    /// The engine, images, stack, targets, WebSocket check, suites, JUnit, history, init.
    Domain,
    /// The gate's pipeline: stages, the run, teardown.
    Pipeline,
    /// What turns the run's events into text, files and reports.
    Sinks,
    /// The commands: the only layer that chooses exit codes.
    Commands,
}

/// Module path prefix → layer; the longest prefix wins.
const LAYERS: &[(&str, Layer)] = &[
    ("clock", Layer::Foundation),
    ("error", Layer::Foundation),
    ("process", Layer::Foundation),
    ("owner", Layer::Foundation),
    ("ui", Layer::Foundation),
    ("progress", Layer::Foundation),
    ("tls", Layer::Foundation),
    ("http", Layer::Foundation),
    ("flags", Layer::Model),
    ("config", Layer::Model),
    ("endpoints", Layer::Model),
    ("state", Layer::Model),
    ("report", Layer::Model),
    ("preflight", Layer::Domain),
    ("engine", Layer::Domain),
    ("images", Layer::Domain),
    ("stack", Layer::Domain),
    ("target", Layer::Domain),
    ("ws", Layer::Domain),
    ("suites", Layer::Domain),
    ("junit", Layer::Domain),
    ("history", Layer::Domain),
    ("init", Layer::Domain),
    ("monitor", Layer::Domain),
    ("gate", Layer::Pipeline),
    ("gate::stages", Layer::Pipeline),
    ("gate::sinks", Layer::Sinks),
    ("commands", Layer::Commands),
    ("cli", Layer::Commands),
    ("main", Layer::Commands),
    ("lib", Layer::Commands),
];

/// Imports from a higher layer still in the tree: (importing module, imported module). Each is
/// a debt with its reason; the test fails when one is gone, so that the list only shrinks.
const KNOWN: &[(&str, &str)] = &[];

fn layer_of(module: &str) -> Option<Layer> {
    LAYERS
        .iter()
        .filter(|(prefix, _)| module == *prefix || module.starts_with(&format!("{prefix}::")))
        .max_by_key(|(prefix, _)| prefix.len())
        .map(|(_, layer)| *layer)
}

/// `src/stack/up.rs` → `stack::up`, `src/stack/mod.rs` → `stack`, `src/lib.rs` → `lib`.
fn module_of(relative: &Path) -> String {
    let mut parts: Vec<String> = relative
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts.join("::")
}

/// The `crate::` paths a file's `use` items name (`super::` and `self::` resolved against
/// `module`; groups `{a, b::c}` expanded; only the leading module path of each kept, as far as
/// it names a module of `known`).
fn imports(module: &str, source: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for statement in use_statements(source) {
        for path in expand(&statement) {
            let Some(absolute) = resolve(module, &path) else {
                continue;
            };
            // The longest prefix of the path that is a module of the tree.
            let parts: Vec<&str> = absolute.split("::").collect();
            if let Some(target) = (1..=parts.len())
                .rev()
                .map(|n| parts[..n].join("::"))
                .find(|candidate| known.contains(candidate))
            {
                if target != module {
                    found.insert(target);
                }
            }
        }
    }
    found
}

/// The text of each `use` item (without `use` and `;`), comments and strings ignored as far as a
/// line-based reading allows (use items start a line).
fn use_statements(source: &str) -> Vec<String> {
    let mut statements = Vec::new();
    let mut current: Option<String> = None;
    for line in source.lines() {
        let trimmed = line.trim();
        match &mut current {
            Some(text) => text.push_str(trimmed),
            None => {
                let rest = trimmed
                    .strip_prefix("pub use ")
                    .or_else(|| trimmed.strip_prefix("pub(crate) use "))
                    .or_else(|| trimmed.strip_prefix("pub(super) use "))
                    .or_else(|| trimmed.strip_prefix("use "));
                match rest {
                    Some(rest) => current = Some(rest.to_owned()),
                    None => continue,
                }
            }
        }
        if current.as_ref().unwrap().trim_end().ends_with(';') {
            let text = current.take().unwrap();
            statements.push(text.trim_end().trim_end_matches(';').to_owned());
        }
    }
    statements
}

/// `a::{b, c::{d, e}}` → `a::b`, `a::c::d`, `a::c::e`.
fn expand(statement: &str) -> Vec<String> {
    let statement = statement.trim();
    let Some(open) = statement.find('{') else {
        let path = statement.split(" as ").next().unwrap_or(statement);
        return vec![path.split_whitespace().collect::<String>()];
    };
    let prefix = &statement[..open];
    let inner = &statement[open + 1..statement.rfind('}').unwrap_or(statement.len())];
    let mut parts = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (at, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .flat_map(|p| expand(&format!("{}{p}", prefix.trim())))
        .map(|p| p.trim_end_matches("::self").to_owned())
        .collect()
}

/// A use path as a path from the crate root (without `crate::`); `None` for other crates.
/// `self::` is the module itself, each `super::` its parent.
fn resolve(module: &str, path: &str) -> Option<String> {
    if let Some(rest) = path.strip_prefix("crate::") {
        return Some(rest.to_owned());
    }
    let mut base: Vec<&str> = if module == "lib" {
        Vec::new()
    } else {
        module.split("::").collect()
    };
    let mut rest = path;
    let mut relative = false;
    if let Some(after) = rest.strip_prefix("self::") {
        rest = after;
        relative = true;
    }
    while let Some(after) = rest.strip_prefix("super::") {
        rest = after;
        relative = true;
        base.pop();
    }
    if !relative {
        return None;
    }
    base.push(rest);
    Some(base.join("::"))
}

/// The circles of the import graph: its strongly connected components of more than one file.
fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    // Tarjan's algorithm, iterative enough for a tree of a few hundred files.
    struct State<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        next: usize,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(state: &mut State<'a>, node: &'a str) {
        state.index.insert(node, state.next);
        state.low.insert(node, state.next);
        state.next += 1;
        state.stack.push(node);
        state.on_stack.insert(node);
        let graph = state.graph;
        for next in graph.get(node).into_iter().flatten() {
            let next = next.as_str();
            if !state.index.contains_key(next) {
                visit(state, next);
                let low = state.low[node].min(state.low[next]);
                state.low.insert(node, low);
            } else if state.on_stack.contains(next) {
                let low = state.low[node].min(state.index[next]);
                state.low.insert(node, low);
            }
        }
        if state.low[node] == state.index[node] {
            let mut component = Vec::new();
            while let Some(top) = state.stack.pop() {
                state.on_stack.remove(top);
                component.push(top.to_owned());
                if top == node {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                state.found.push(component);
            }
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        found: Vec::new(),
    };
    for node in graph.keys() {
        if !state.index.contains_key(node.as_str()) {
            visit(&mut state, node);
        }
    }
    state.found
}

/// The import graph of a tree of sources: module → the modules it imports. A module importing
/// its own descendant (a folder's `mod.rs` declaring and re-exporting its children) is no edge:
/// that is how a folder is made, not a dependency between equals.
fn graph_of(files: &[(String, String)]) -> BTreeMap<String, BTreeSet<String>> {
    let known: BTreeSet<String> = files.iter().map(|(m, _)| m.clone()).collect();
    files
        .iter()
        .map(|(module, source)| {
            let edges = imports(module, source, &known)
                .into_iter()
                .filter(|target| module != "lib" && !target.starts_with(&format!("{module}::")))
                .collect();
            (module.clone(), edges)
        })
        .collect()
}

/// What breaks the rules: each import from a higher layer, each circle.
fn violations(files: &[(String, String)], known: &[(&str, &str)]) -> Vec<String> {
    let graph = graph_of(files);
    let mut problems = Vec::new();
    let mut seen_known = BTreeSet::new();
    for (module, targets) in &graph {
        let Some(own) = layer_of(module) else {
            problems.push(format!("{module}: in no layer (add it to LAYERS)"));
            continue;
        };
        for target in targets {
            let Some(theirs) = layer_of(target) else {
                continue;
            };
            if theirs > own {
                if known.contains(&(module.as_str(), target.as_str())) {
                    seen_known.insert((module.clone(), target.clone()));
                    continue;
                }
                problems.push(format!(
                    "{module} ({own:?}) imports {target} ({theirs:?}), a layer above it"
                ));
            }
        }
    }
    for (module, target) in known {
        if !seen_known.contains(&((*module).to_owned(), (*target).to_owned())) {
            problems.push(format!(
                "KNOWN lists {module} -> {target}, which is gone: take it off the list"
            ));
        }
    }
    for circle in circles(&graph) {
        problems.push(format!("circle of imports: {}", circle.join(" -> ")));
    }
    problems
}

/// Every `.rs` file under `dir`.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn sources(root: &Path) -> Vec<(String, String)> {
    let mut files = Vec::new();
    walk(root, &mut files);
    files.sort();
    files
        .into_iter()
        // Test modules may use anything of their parent; they are not part of the layering.
        .filter(|path| path.file_stem().is_none_or(|s| s != "tests"))
        .map(|path| {
            let relative = path.strip_prefix(root).unwrap().to_path_buf();
            let source = std::fs::read_to_string(&path).unwrap();
            // The part before a `#[cfg(test)] mod tests` block is the module itself.
            let body = match source.find("#[cfg(test)]\nmod tests") {
                Some(at) => source[..at].to_owned(),
                None => source,
            };
            (module_of(&relative), body)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Who prints: only the commands and the sinks turn results into text on the terminal.

/// Where printing is allowed (paths under `src/`, a folder ending in `/`): the commands, the
/// sinks, the command line, the binary, and `ui.rs`, which defines `say` and `print_json`.
const MAY_PRINT: &[&str] = &["commands/", "gate/sinks/", "cli.rs", "main.rs", "ui.rs"];

/// Files outside [`MAY_PRINT`] that still print: each a debt with its reason; the test fails when
/// one no longer prints, so that the list only shrinks.
const KNOWN_PRINTS: &[&str] = &[];

/// The calls that print. `print!(` also ends `eprint!(`; a match counts only at a word's start.
const PRINT_CALLS: &[&str] = &[
    "ui::say(",
    "ui::print_json(",
    "println!(",
    "eprintln!(",
    "print!(",
    "eprint!(",
];

/// The printing calls in one file's source, as `(line, call)`: comments and the `#[cfg(test)] mod
/// tests` block are skipped; `say(` and `print_json(` count bare too when the file imports them
/// from `ui`.
fn print_calls(source: &str) -> Vec<(usize, &'static str)> {
    let body = match source.find("#[cfg(test)]\nmod tests") {
        Some(at) => &source[..at],
        None => source,
    };
    let imported: Vec<&'static str> = use_statements(body)
        .iter()
        .flat_map(|statement| expand(statement))
        .filter_map(|path| match path.as_str() {
            "crate::ui::say" => Some("say("),
            "crate::ui::print_json" => Some("print_json("),
            _ => None,
        })
        .collect();
    let mut found = Vec::new();
    for (number, line) in body.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        for call in PRINT_CALLS.iter().chain(&imported) {
            let at_word_start = code.match_indices(call).any(|(at, _)| {
                code[..at]
                    .chars()
                    .next_back()
                    .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '.'))
            });
            if at_word_start {
                found.push((number + 1, *call));
            }
        }
    }
    found
}

/// What breaks the print rule in a tree of `(path under src, source)`: each printing call
/// outside [`MAY_PRINT`] and `known`, as `path:line: call`, and each `known` file that no longer
/// prints.
fn print_violations(files: &[(String, String)], known: &[&str]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen_known = BTreeSet::new();
    for (path, source) in files {
        if MAY_PRINT
            .iter()
            .any(|allowed| path == allowed || (allowed.ends_with('/') && path.starts_with(allowed)))
        {
            continue;
        }
        let calls = print_calls(source);
        if calls.is_empty() {
            continue;
        }
        if known.contains(&path.as_str()) {
            seen_known.insert(path.as_str());
            continue;
        }
        for (line, call) in calls {
            problems.push(format!(
                "src/{path}:{line}: `{call}` prints outside commands/ and gate/sinks/ (return a \
                 value or say it through a Progress the caller hands down)"
            ));
        }
    }
    for path in known {
        if !seen_known.contains(path) {
            problems.push(format!(
                "KNOWN_PRINTS lists {path}, which no longer prints: take it off the list"
            ));
        }
    }
    problems
}

#[test]
fn only_the_commands_and_the_sinks_print() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    walk(&root, &mut paths);
    paths.sort();
    let files: Vec<(String, String)> = paths
        .iter()
        .filter(|path| path.file_stem().is_none_or(|s| s != "tests"))
        .map(|path| {
            let relative = path.strip_prefix(&root).unwrap();
            let relative = relative.to_string_lossy().replace('\\', "/");
            (relative, std::fs::read_to_string(path).unwrap())
        })
        .collect();
    assert!(
        files.len() > 100,
        "the tree was read: {} files",
        files.len()
    );
    let problems = print_violations(&files, KNOWN_PRINTS);
    assert!(
        problems.is_empty(),
        "{} printing problems in {}:\n{}",
        problems.len(),
        root.display(),
        problems.join("\n")
    );
}

#[test]
fn a_print_outside_the_commands_is_reported_with_its_file_and_line() {
    let legal = vec![
        (
            "commands/doctor.rs".to_owned(),
            "fn run() {\n    eprint!(\"{}\", table);\n    ui::say(\"done\");\n}\n".to_owned(),
        ),
        (
            "gate/sinks/terminal.rs".to_owned(),
            "fn line() { eprintln!(\"x\"); }\n".to_owned(),
        ),
        (
            "engine/start.rs".to_owned(),
            "// println!(\"in a comment\")\nfn f(p: &Progress) { p.say(\"through the caller\"); }\n\
             #[cfg(test)]\nmod tests {\n    fn t() { println!(\"in a test\"); }\n}\n"
                .to_owned(),
        ),
    ];
    assert_eq!(print_violations(&legal, &[]), Vec::<String>::new());

    // A domain module that prints, directly and through an imported `say`.
    let mut bad = legal.clone();
    bad[2].1 =
        "use crate::ui::{duration, say};\nfn f() {\n    eprintln!(\"x\");\n    say(\"y\");\n}\n"
            .to_owned();
    assert_eq!(
        print_violations(&bad, &[]),
        [
            "src/engine/start.rs:3: `eprintln!(` prints outside commands/ and gate/sinks/ (return a \
             value or say it through a Progress the caller hands down)",
            "src/engine/start.rs:4: `say(` prints outside commands/ and gate/sinks/ (return a \
             value or say it through a Progress the caller hands down)",
        ]
    );
    // `print!(` inside `eprint!(` counts once.
    assert_eq!(print_calls("eprint!(\"x\");\n"), [(1, "eprint!(")]);

    // A known debt that was paid is reported, so the list only shrinks.
    assert_eq!(
        print_violations(&legal, &["engine/start.rs"]),
        ["KNOWN_PRINTS lists engine/start.rs, which no longer prints: take it off the list"]
    );
}

#[test]
fn every_module_imports_only_from_its_layer_or_below_and_none_in_a_circle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = sources(&root);
    assert!(
        files.len() > 100,
        "the tree was read: {} files",
        files.len()
    );
    let problems = violations(&files, KNOWN);
    assert!(
        problems.is_empty(),
        "{} layering problems in {}:\n{}",
        problems.len(),
        root.display(),
        problems.join("\n")
    );
}

#[test]
fn the_checker_reads_use_lines_as_the_compiler_does() {
    let source = "use std::path::Path;\nuse crate::config::{Config, SuiteCfg};\npub use super::stop::{Level,\n    Urgency};\nuse self::inner::Thing;\nuse crate::gate::{self, sinks::history::test_id as id};\n";
    let known: BTreeSet<String> = [
        "config",
        "stack",
        "stack::down",
        "stack::stop",
        "gate",
        "gate::sinks",
        "gate::sinks::history",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(
        imports("stack::down", source, &known),
        BTreeSet::from([
            "config".to_owned(),
            "stack::stop".to_owned(),
            "gate".to_owned(),
            "gate::sinks::history".to_owned(),
        ])
    );
    // `super::` of a folder's mod.rs leaves the folder; of a file, it is the folder.
    assert_eq!(
        resolve("stack", "super::config::X"),
        Some("config::X".into())
    );
    assert_eq!(
        resolve("stack::up", "super::model::M"),
        Some("stack::model::M".into())
    );
    assert_eq!(
        resolve("stack::up", "self::inner"),
        Some("stack::up::inner".into())
    );
    assert_eq!(resolve("stack::up", "std::fs"), None);
    assert_eq!(module_of(Path::new("stack/mod.rs")), "stack");
    assert_eq!(
        module_of(Path::new("gate/sinks/html.rs")),
        "gate::sinks::html"
    );
}

#[test]
fn a_bad_import_and_a_circle_are_reported_and_a_legal_tree_is_not() {
    let legal = vec![
        ("clock".to_owned(), String::new()),
        ("config".to_owned(), "use crate::clock::now;\n".to_owned()),
        ("gate".to_owned(), "use crate::config::Config;\n".to_owned()),
        (
            "gate::sinks".to_owned(),
            "use crate::gate::Event;\n".to_owned(),
        ),
    ];
    assert_eq!(violations(&legal, &[]), Vec::<String>::new());

    // A foundation module importing the pipeline.
    let mut bad = legal.clone();
    bad[0].1 = "use crate::gate::context::Context;\n".to_owned();
    let problems = violations(&bad, &[]);
    assert!(
        problems
            .iter()
            .any(|p| p == "clock (Foundation) imports gate (Pipeline), a layer above it"),
        "{problems:?}"
    );
    // ... which is also a circle: clock -> gate -> config -> clock.
    assert!(
        problems
            .iter()
            .any(|p| p == "circle of imports: clock -> config -> gate"),
        "{problems:?}"
    );

    // Two files of one layer importing each other.
    let pair = vec![
        (
            "stack::down".to_owned(),
            "use super::stop::Level;\n".to_owned(),
        ),
        (
            "stack::stop".to_owned(),
            "use super::down::Labelled;\n".to_owned(),
        ),
    ];
    assert_eq!(
        violations(&pair, &[]),
        ["circle of imports: stack::down -> stack::stop"]
    );

    // A KNOWN debt that was paid is reported, so the list only shrinks.
    assert_eq!(
        violations(&legal, &[("config", "gate")]),
        ["KNOWN lists config -> gate, which is gone: take it off the list"]
    );
}
