//! The `afritalk user` subcommands, run as an operator runs them: the real
//! binary on a fresh data directory (the embedded default's SQLite file).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::process::{Command, Output};

fn afritalk(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_afritalk"))
        .args(args)
        .env("AFRITALK_DATA_DIR", dir.join("data"))
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn stdout_ok(output: &Output) -> String {
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[test]
fn user_list_shows_the_directory_by_name_and_searches_without_accents() {
    let dir = tempfile::tempdir().unwrap();
    for (user, role, name, extra) in [
        ("awa", "PDG", "Awa Diop", None),
        ("elo", "DG", "Élodie Koné", None),
        ("old", "Employé", "Elodie Bamba", Some("--inactive")),
    ] {
        let mut args = vec!["user", "upsert", "--tenant", "acme", "--user", user];
        args.extend(["--role", role, "--name", name]);
        args.extend(extra);
        stdout_ok(&afritalk(dir.path(), &args));
    }
    let listed = stdout_ok(&afritalk(dir.path(), &["user", "list", "--tenant", "acme"]));
    assert_eq!(
        listed.lines().collect::<Vec<_>>(),
        ["awa\tPDG\tactive\tAwa Diop", "elo\tDG\tactive\tÉlodie Koné"]
    );
    let found = stdout_ok(&afritalk(
        dir.path(),
        &[
            "user",
            "list",
            "--tenant",
            "acme",
            "--search",
            "ELODIE",
            "--include-inactive",
        ],
    ));
    assert_eq!(
        found.lines().collect::<Vec<_>>(),
        [
            "old\tEMPLOYE\tinactive\tElodie Bamba",
            "elo\tDG\tactive\tÉlodie Koné"
        ]
    );
    let none = stdout_ok(&afritalk(
        dir.path(),
        &["user", "list", "--tenant", "globex"],
    ));
    assert_eq!(none.trim(), "no users in globex");
    let long = "x".repeat(101);
    let refused = afritalk(
        dir.path(),
        &["user", "list", "--tenant", "acme", "--search", &long],
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--search"));
}
