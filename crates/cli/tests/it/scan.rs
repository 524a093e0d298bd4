//! `leash scan`: files, .gitignore, stdin and git history; text, JSON and
//! SARIF; exit codes; Leash tokens found are revoked through the server.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::harness::{BIN, Leash, stderr, stdout};

const DO_TOKEN: &str = "dop_v1_a4c123b1612dd272d1371c17149d439536b3216fdaeeb975729fae923d5a4fd1";

fn git(dir: &Path, args: &[&str]) {
    let o = Command::new("git")
        .args([
            "-c",
            "user.name=Dev",
            "-c",
            "user.email=dev@acme.io",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// `leash scan` with no server around (no credential, no LEASH_URL).
fn offline(cwd: &Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("scan")
        .args(args)
        .current_dir(cwd)
        .env_remove("LEASH_TOKEN")
        .env("LEASH_DATA", cwd.join("no-such-dir"))
        .output()
        .unwrap()
}

#[test]
fn files_gitignore_formats_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("src")).unwrap();
    std::fs::write(
        d.join("src/deploy.sh"),
        format!("#!/bin/sh\nexport DIGITALOCEAN_TOKEN={DO_TOKEN}\n"),
    )
    .unwrap();
    std::fs::write(d.join(".gitignore"), "secrets.env\n").unwrap();
    std::fs::write(
        d.join("secrets.env"),
        "AWS_ACCESS_KEY_ID=AKIAU24HYBUZOFA3YVCK\n",
    )
    .unwrap();
    std::fs::write(
        d.join("README.md"),
        "use AKIAIOSFODNN7EXAMPLE as in the AWS docs\n",
    )
    .unwrap();
    git(d, &["init", "-q"]);

    let o = offline(d, &["."]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "secrets found → exit 1: {}",
        stderr(&o)
    );
    let out = stdout(&o);
    assert!(
        out.contains("src/deploy.sh:2:") && out.contains("digitalocean-pat"),
        "{out}"
    );
    assert!(!out.contains(DO_TOKEN), "output is redacted: {out}");
    assert!(!out.contains("secrets.env"), ".gitignore honoured: {out}");
    assert!(stderr(&o).contains("scanning offline"), "{}", stderr(&o));

    let o = offline(d, &[".", "--no-ignore", "--json"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let rules: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule_id"].as_str().unwrap())
        .collect();
    assert!(
        rules.contains(&"aws-access-key-id") && rules.contains(&"digitalocean-pat"),
        "{v}"
    );
    assert_eq!(v["secrets_found"], 2);
    assert_eq!(v["server"], Value::Null);
    assert!(!String::from_utf8_lossy(&o.stdout).contains("AKIAU24HYBUZOFA3YVCK"));

    let o = offline(d, &["src", "--format", "sarif"]);
    let s: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["version"], "2.1.0");
    let r = &s["runs"][0]["results"][0];
    assert_eq!(r["ruleId"], "digitalocean-pat");
    assert_eq!(
        r["locations"][0]["physicalLocation"]["region"]["startLine"],
        2
    );
    assert!(r["partialFingerprints"].to_string().len() > 64);

    // nothing found → exit 0; a bad flag or rule file → exit 2 with the reason
    std::fs::write(d.join("clean.txt"), "nothing to see\n").unwrap();
    assert_eq!(offline(d, &["clean.txt"]).status.code(), Some(0));
    let o = offline(d, &[".", "--format", "xml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("use text, json or sarif"),
        "{}",
        stderr(&o)
    );
    std::fs::write(
        d.join("bad.toml"),
        "[[rules]]\nid = \"x\"\nregex = \"(unclosed\"\n",
    )
    .unwrap();
    let o = offline(d, &[".", "--rules", "bad.toml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("x"), "{}", stderr(&o));
    // a gitleaks rule file adds rules
    std::fs::write(d.join("extra.toml"), "[[rules]]\nid = \"acme-internal\"\ndescription = \"Acme key\"\nregex = '''acme_[a-z0-9]{24}'''\nkeywords = [\"acme_\"]\n").unwrap();
    std::fs::write(d.join("clean.txt"), "key acme_k2j4h5g6f7d8s9a0q1w2e3r4\n").unwrap();
    let o = offline(d, &["clean.txt", "--rules", "extra.toml", "--json"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["findings"][0]["rule_id"], "acme-internal", "{v}");
}

#[tokio::test]
async fn a_leash_token_in_git_history_or_stdin_is_revoked_through_the_server() {
    let l = Leash::start().await;
    let run = l.fixture().await;
    let opaque = l
        .mint(json!({"workload": "triage-bot", "run": run, "scopes": ["tickets:read"], "ttl": "30m", "format": "opaque"}))
        .await;
    let jwt = l
        .mint(
            json!({"workload": "triage-bot", "run": run, "scopes": ["tickets:read"], "ttl": "30m"}),
        )
        .await;

    // committed in one commit, deleted in the next: only history has it
    let repo = l.root.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    git(&repo, &["init", "-q"]);
    std::fs::write(
        repo.join("app.env"),
        format!("# ci\nLEASH_TOKEN={}\n", opaque["token"].as_str().unwrap()),
    )
    .unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-qm", "add env"]);
    std::fs::remove_file(repo.join("app.env")).unwrap();
    std::fs::write(repo.join("README"), "oops, removed\n").unwrap();
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-qm", "remove env"]);

    let o = l.cli(&["scan", "--offline", "repo"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "the work tree is clean: {}",
        stdout(&o)
    );
    assert_eq!(
        l.explain(opaque["id"].as_str().unwrap()).await["status"],
        "active",
        "--offline revokes nothing"
    );

    let o = l.cli(&["scan", "--git", "repo", "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let f = &v["findings"][0];
    assert_eq!(f["rule_id"], "leash-opaque");
    assert_eq!(f["location"]["source"], "git");
    assert_eq!(f["location"]["path"], "app.env");
    assert_eq!(f["location"]["author"]["email"], "dev@acme.io");
    let e = &v["server"]["exposures"][0];
    assert_eq!(e["action"], "revoked", "{v}");
    assert_eq!(e["source"], "git");
    assert!(
        e["location"].as_str().unwrap().starts_with("app.env:2@"),
        "{e}"
    );
    let x = l.explain(opaque["id"].as_str().unwrap()).await;
    assert_eq!(x["revoked"]["trigger"], "exposure");

    // a JWT on stdin is recognised by the server's key (kid + signature)
    let text = format!(
        "curl -H 'Authorization: Bearer {}' https://api",
        jwt["token"].as_str().unwrap()
    );
    let o = l.cli_stdin(&["scan", "-", "--source", "chat"], text.as_bytes());
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("leash-jwt"), "{out}");
    assert!(out.contains("1 Leash token(s) revoked"), "{out}");
    assert!(!out.contains(jwt["token"].as_str().unwrap()));
    assert_eq!(
        l.explain(jwt["id"].as_str().unwrap()).await["revoked"]["trigger"],
        "exposure"
    );
    let (_, list) = l.get("/v1/exposures").await;
    assert_eq!(list[0]["source"], "chat");
    assert_eq!(list[0]["location"], "stdin:1");

    // offline with the server's JWKS saved to a file, a Leash JWT is still recognised
    let jwks = l.public_text("/.well-known/jwks.json").await;
    std::fs::write(l.root.path().join("jwks.json"), jwks).unwrap();
    let o = l.cli_stdin(
        &["scan", "-", "--offline", "--jwks", "jwks.json", "--json"],
        text.as_bytes(),
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["findings"][0]["rule_id"], "leash-jwt", "{v}");
    assert_eq!(v["server"], Value::Null);

    // the server down: the scan fails (exit 2) and says how to scan offline, instead of pretending
    let mut l = l;
    l.kill();
    let o = l.cli_stdin(&["scan", "-"], text.as_bytes());
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(stderr(&o).contains("--offline"), "{}", stderr(&o));
}

#[test]
fn the_pre_commit_hook_refuses_a_commit_that_adds_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    git(d, &["init", "-q"]);
    let hook = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/pre-commit");
    std::fs::copy(&hook, d.join(".git/hooks/pre-commit")).unwrap();
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let commit = |msg: &str| {
        Command::new("git")
            .args([
                "-c",
                "user.name=Dev",
                "-c",
                "user.email=dev@acme.io",
                "commit",
                "-qm",
                msg,
            ])
            .current_dir(d)
            .env("PATH", &path)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env_remove("LEASH_TOKEN")
            .output()
            .unwrap()
    };
    std::fs::write(d.join("app.py"), "print('hello')\n").unwrap();
    git(d, &["add", "."]);
    let o = commit("clean");
    assert!(o.status.success(), "{}", stderr(&o));

    std::fs::write(
        d.join("app.py"),
        format!("print('hello')\nTOKEN = \"{DO_TOKEN}\"\n"),
    )
    .unwrap();
    git(d, &["add", "."]);
    let o = commit("oops");
    assert!(!o.status.success(), "the hook must refuse");
    let err = stderr(&o) + &stdout(&o);
    assert!(
        err.contains("digitalocean-pat") && err.contains("add secrets"),
        "{err}"
    );
    assert!(!err.contains(DO_TOKEN), "{err}");
}
