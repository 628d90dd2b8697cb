//! Property-driven fuzzing of everything a user types or points to (issue 23): the target
//! expression parser, configuration and plan TOML, and the record reader. Each property is that
//! the input is accepted or refused with an error, never a panic; accepted expressions evaluate
//! without panicking. Bounded: a few hundred cases each (set `PROPTEST_CASES` for a longer run).

use giantstep::expr::Expr;
use giantstep::sweep::{read_records, Plan};
use giantstep::Config;
use proptest::prelude::*;

/// Fragments of the expression language and of its mistakes.
fn expr_text() -> impl Strategy<Value = String> {
    let atoms = prop::sample::select(vec![
        "z1",
        "z2",
        "z3",
        "z0",
        "z17",
        "x1",
        "1",
        "0",
        "-",
        "+",
        "*",
        "/",
        "^",
        "^2",
        "^-1",
        "^0.5",
        "(",
        ")",
        "he(",
        "he2(",
        "he(3,",
        "he(21,",
        ",",
        "tanh(",
        "relu(",
        "exp(",
        "sqrt(",
        "abs(",
        "sign(",
        "1e308",
        "1e-308",
        "nan",
        "inf",
        " ",
        "..",
        "3.5",
        "e",
        "é",
        "\n",
        "\u{0}",
        "he(64, z1)",
    ]);
    prop::collection::vec(atoms, 0..24).prop_map(|v| v.concat())
}

/// TOML lines mixing real keys, wrong types, unknown keys and broken syntax.
fn toml_text(plan: bool) -> impl Strategy<Value = String> {
    let mut lines = vec![
        "[network]",
        "[train]",
        "[target]",
        "[readout]",
        "[eval]",
        "d = 8",
        "p = 4",
        "p = 5",
        "d = 0",
        "d = -1",
        "d = 1e300",
        "d = \"x\"",
        "n = \"d^1.5\"",
        "n = \"4x\"",
        "n = 0",
        "steps = 3",
        "steps = 100000",
        "eta0 = -1",
        "eta0 = nan",
        "eta_schedule = []",
        "eta_schedule = [1, -1]",
        "activation = \"relu:1e6\"",
        "activation = \"tanh\"",
        "expr = \"z1 + z1*z2\"",
        "preset = \"nope\"",
        "r = 99",
        "lambda = -1",
        "n_test = 10",
        "threads = 100000",
        "chunk = 0",
        "seed = -1",
        "foo = 1",
        "[network",
        "= 3",
        "\"a.b\" = 1",
        "x = { y = 1 }",
        "[[network]]",
    ];
    if plan {
        lines.extend([
            "name = \"p\"",
            "name = 3",
            "figure = \"stairway\"",
            "figure = \"pie\"",
            "[base]",
            "[axes]",
            "seed = \"0..3\"",
            "seed = \"3..0\"",
            "seed = []",
            "\"train.n\" = { from = 1.0, to = 2.0, step = 0.5, power_of_d = true }",
            "\"train.n\" = { from = 1.0, to = 2.0, step = 0 }",
            "\"network.d\" = [8, 0]",
            "base = 3",
        ]);
    }
    prop::collection::vec(prop::sample::select(lines), 0..12).prop_map(|v| v.join("\n"))
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(400),
        ..ProptestConfig::default()
    })]

    #[test]
    fn expressions_parse_or_refuse(text in expr_text(), raw in ".{0,40}") {
        for t in [&text, &raw] {
            if let Ok(e) = Expr::parse(t) {
                let x = vec![0.3; e.max_var().max(1)];
                let _ = e.eval(&x);
                let _ = e.axis_degree();
            }
        }
    }

    #[test]
    fn configurations_parse_or_refuse(text in toml_text(false)) {
        if let Ok(c) = Config::from_toml(&text, "fuzz.toml") {
            if let Ok(v) = c.resolve() {
                let _ = v.memory_estimate(1);
                let _ = giantstep::cost::run_flops(&v, 1);
            }
        }
    }

    #[test]
    fn plans_parse_or_refuse(text in toml_text(true)) {
        if let Ok(plan) = Plan::from_toml(&text, "fuzz.toml") {
            let _ = plan.len();
            let _ = plan.id();
        }
    }

    #[test]
    fn record_files_read_or_refuse(lines in prop::collection::vec(
        prop::sample::select(vec![
            "{\"hash\":\"", "{\"hash\":\"0\",\"plan\":\"p\"}", "{}", "not json", "", " ", "\u{0}\u{0}", "{\"hash\":1}",
        ]),
        0..8,
    ), end_newline in any::<bool>()) {
        let dir = std::env::temp_dir().join(format!("giantstep-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("r-{}.jsonl", giantstep::sweep::fnv_hex(&format!("{lines:?}{end_newline}"))));
        let mut text = lines.join("\n");
        if end_newline {
            text.push('\n');
        }
        std::fs::write(&path, text).unwrap();
        let _ = read_records(&path);
        let _ = std::fs::remove_file(&path);
    }
}
