//! `cargo xtask`: the project's own commands (see `.cargo/config.toml` for the alias).
//!
//! - `cargo xtask test` — what a newcomer and CI run: installs what the tests need that this
//!   machine lacks (Debian packages through `apt-get` when run as root, cargo tools through
//!   `cargo install`), then runs every tier and the doc tests. Nothing is ever skipped: a
//!   missing tool that cannot be installed stops the run with the command that installs it.
//! - `cargo xtask test --fast` — the inner loop: the fast tier only (no browsers, no root, no
//!   million-message or hundred-kill runs), under a minute after the build.
//! - `cargo xtask test --tier slow|browser|fast` (repeatable) — chosen tiers.
//! - `cargo xtask provision [--tier …]` — install what the tiers need and run nothing.
//! - Arguments after `--` go to `cargo nextest run` (a filter, `--no-fail-fast`, …).
//!
//! The tiers are nextest profiles in `.config/nextest.toml` (`fast`, `slow`, `browser`; the
//! `default` profile runs them all), so `cargo nextest run --workspace --profile fast` works
//! without this command too. This crate uses the standard library only, so it builds in
//! seconds on a fresh machine.

use std::collections::BTreeSet;
use std::process::{Command, ExitCode};

/// A group of tests with its own needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Tier {
    /// No browsers, no root, no long runs.
    Fast,
    /// Long fault, crash and flood runs; mounts small file systems (root).
    Slow,
    /// Both portals in Chromium and Firefox.
    Browser,
}

impl Tier {
    const ALL: [Tier; 3] = [Tier::Fast, Tier::Slow, Tier::Browser];

    fn parse(s: &str) -> Option<Tier> {
        match s {
            "fast" => Some(Tier::Fast),
            "slow" => Some(Tier::Slow),
            "browser" => Some(Tier::Browser),
            _ => None,
        }
    }

    fn profile(self) -> &'static str {
        match self {
            Tier::Fast => "fast",
            Tier::Slow => "slow",
            Tier::Browser => "browser",
        }
    }
}

/// Where a missing tool comes from.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// A Debian package.
    Apt(&'static str),
    /// `cargo install --locked <crate> [--version <v>]`.
    Cargo(&'static str, Option<&'static str>),
}

/// A tool some tier needs, found by running `probe` (exit status 0: present).
#[derive(Debug, Clone, Copy)]
struct Need {
    what: &'static str,
    probe: &'static [&'static str],
    source: Source,
    tiers: &'static [Tier],
}

const NEEDS: &[Need] = &[
    Need {
        what: "cargo-nextest",
        probe: &["cargo", "nextest", "--version"],
        source: Source::Cargo("cargo-nextest", None),
        tiers: &[Tier::Fast, Tier::Slow, Tier::Browser],
    },
    Need {
        // The nats source and destination tests run a real JetStream server.
        what: "nats-server",
        probe: &["/usr/sbin/nats-server", "--version"],
        source: Source::Apt("nats-server"),
        tiers: &[Tier::Fast, Tier::Slow],
    },
    Need {
        what: "mkfs.ext4 (a real full disk, loop-mounted)",
        probe: &["mkfs.ext4", "-V"],
        source: Source::Apt("e2fsprogs"),
        tiers: &[Tier::Slow],
    },
    Need {
        what: "losetup",
        probe: &["losetup", "--version"],
        source: Source::Apt("mount"),
        tiers: &[Tier::Slow],
    },
    Need {
        what: "mosquitto (the MQTT broker the mqtt sides are tested against)",
        probe: &["sh", "-c", "test -x /usr/sbin/mosquitto && command -v mosquitto_passwd"],
        source: Source::Apt("mosquitto"),
        tiers: &[Tier::Fast, Tier::Slow],
    },
    Need {
        // A second MQTT client beside ours: the tests publish as another instance would
        // (mosquitto_pub) and watch the broker (mosquitto_sub). A fresh machine found it missing.
        what: "mosquitto_pub and mosquitto_sub",
        probe: &["sh", "-c", "command -v mosquitto_pub && command -v mosquitto_sub"],
        source: Source::Apt("mosquitto-clients"),
        tiers: &[Tier::Fast, Tier::Slow],
    },
    Need {
        // The shipped systemd unit is verified and its exposure scored.
        what: "systemd-analyze",
        probe: &["systemd-analyze", "--version"],
        source: Source::Apt("systemd"),
        tiers: &[Tier::Fast, Tier::Slow],
    },
    Need {
        what: "chromium",
        probe: &["chromium", "--version"],
        source: Source::Apt("chromium"),
        tiers: &[Tier::Browser],
    },
    Need {
        what: "chromedriver",
        probe: &["chromedriver", "--version"],
        source: Source::Apt("chromium-driver"),
        tiers: &[Tier::Browser],
    },
    Need {
        what: "firefox-esr",
        probe: &["firefox-esr", "--version"],
        source: Source::Apt("firefox-esr"),
        tiers: &[Tier::Browser],
    },
    Need {
        what: "geckodriver",
        probe: &["geckodriver", "--version"],
        source: Source::Cargo("geckodriver", Some("0.37.1")),
        tiers: &[Tier::Browser],
    },
];

#[derive(Debug, Default)]
struct Args {
    provision_only: bool,
    tiers: BTreeSet<Tier>,
    nextest: Vec<String>,
}

const USAGE: &str =
    "usage: cargo xtask test [--fast | --tier fast|slow|browser ...] [-- <nextest args>]
       cargo xtask provision [--tier fast|slow|browser ...]
  test        install what the chosen tiers need, then run them (default: every tier and the
              doc tests — what CI runs)
  --fast      the fast tier only: no browsers, no root, no long runs
  provision   install what the chosen tiers need (default: all) and run nothing";

fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut out = Args::default();
    match args.next().as_deref() {
        Some("test") => {}
        Some("provision") => out.provision_only = true,
        Some("-h" | "--help") | None => return Err(USAGE.into()),
        Some(other) => return Err(format!("unknown command `{other}`\n{USAGE}")),
    }
    while let Some(a) = args.next() {
        match a.as_str() {
            "--fast" => {
                out.tiers.insert(Tier::Fast);
            }
            "--tier" => {
                let t = args.next().unwrap_or_default();
                out.tiers
                    .insert(Tier::parse(&t).ok_or_else(|| format!("unknown tier `{t}`\n{USAGE}"))?);
            }
            "--" => out.nextest.extend(args.by_ref()),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    if out.tiers.is_empty() {
        out.tiers.extend(Tier::ALL);
    }
    Ok(out)
}

fn present(probe: &[&str]) -> bool {
    let Some((cmd, args)) = probe.split_first() else { return false };
    let mut c = Command::new(cmd);
    c.args(args).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    if c.status().is_ok_and(|s| s.success()) {
        return true;
    }
    // `cargo install` puts tools in ~/.cargo/bin, which need not be on PATH.
    std::env::var_os("HOME").is_some_and(|home| {
        let path = std::path::Path::new(&home).join(".cargo/bin").join(cmd);
        path.is_file() && Command::new(path).args(args).output().is_ok_and(|o| o.status.success())
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn run(cmd: &mut Command) -> Result<(), String> {
    eprintln!("xtask: {}", render(cmd));
    match cmd.status() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("`{}` failed ({s})", render(cmd))),
        Err(e) => Err(format!("cannot run `{}`: {e}", render(cmd))),
    }
}

fn render(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Installs what `tiers` need and this machine lacks; an error says what is missing and how
/// to install it.
fn provision(tiers: &BTreeSet<Tier>) -> Result<(), String> {
    let missing: Vec<&Need> = NEEDS
        .iter()
        .filter(|n| n.tiers.iter().any(|t| tiers.contains(t)))
        .filter(|n| !present(n.probe))
        .collect();
    let apt: Vec<&str> = missing
        .iter()
        .filter_map(|n| match n.source {
            Source::Apt(p) => Some(p),
            Source::Cargo(..) => None,
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if !apt.is_empty() {
        let names: Vec<&str> = missing.iter().map(|n| n.what).collect();
        eprintln!(
            "xtask: missing {}: installing Debian packages {}",
            names.join(", "),
            apt.join(" ")
        );
        if !is_root() || !present(&["apt-get", "--version"]) {
            return Err(format!(
                "these tests need {} and this is not root on a Debian-like system: install them \
                 with `sudo apt-get install {}`, or run `cargo xtask test --fast`",
                names.join(", "),
                apt.join(" ")
            ));
        }
        run(Command::new("apt-get").args(["update", "-qq"]))?;
        run(Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-qq"])
            .args(&apt))?;
    }
    for n in &missing {
        if let Source::Cargo(krate, version) = n.source {
            let mut c = Command::new("cargo");
            c.args(["install", "--locked", krate]);
            if let Some(v) = version {
                c.args(["--version", v]);
            }
            run(&mut c)?;
        }
    }
    if let Some(n) = NEEDS
        .iter()
        .filter(|n| n.tiers.iter().any(|t| tiers.contains(t)))
        .find(|n| !present(n.probe))
    {
        return Err(format!("{} is still missing after installing it", n.what));
    }
    if tiers.contains(&Tier::Slow) && !is_root() {
        return Err("the slow tier mounts a small tmpfs and a loop-mounted ext4 to fill a real \
                    disk: run it as root (CI does), or run `cargo xtask test --fast`"
            .into());
    }
    Ok(())
}

fn test(args: &Args) -> Result<(), String> {
    let all = args.tiers.len() == Tier::ALL.len();
    let mut nextest = Command::new("cargo");
    nextest.args(["nextest", "run", "--workspace"]);
    if all {
        // One run of every tier schedules the slow tests beside the fast ones.
        nextest.args(["--profile", "default"]);
        run(nextest.args(&args.nextest))?;
        return run(Command::new("cargo").args(["test", "--workspace", "--doc"]));
    }
    for tier in &args.tiers {
        let mut c = Command::new("cargo");
        c.args(["nextest", "run", "--workspace", "--profile", tier.profile()]).args(&args.nextest);
        run(&mut c)?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let result = provision(&args.tiers)
        .and_then(|()| if args.provision_only { Ok(()) } else { test(&args) });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(args: &[&str]) -> Result<Args, String> {
        parse(args.iter().map(ToString::to_string))
    }

    #[test]
    fn test_runs_every_tier_unless_told_otherwise() {
        let a = parsed(&["test"]).expect("parse");
        assert_eq!(a.tiers.into_iter().collect::<Vec<_>>(), Tier::ALL);
        let a = parsed(&["test", "--fast", "--", "-E", "test(x)"]).expect("parse");
        assert_eq!(a.tiers.into_iter().collect::<Vec<_>>(), [Tier::Fast]);
        assert_eq!(a.nextest, ["-E", "test(x)"]);
        let a = parsed(&["provision", "--tier", "browser"]).expect("parse");
        assert!(a.provision_only);
        assert_eq!(a.tiers.into_iter().collect::<Vec<_>>(), [Tier::Browser]);
    }

    #[test]
    fn unknown_words_are_refused_with_the_usage() {
        for bad in [&["tset"][..], &["test", "--tier", "quick"], &["test", "--flaky"], &[]] {
            let e = parsed(bad).expect_err("refused");
            assert!(e.contains("usage: cargo xtask test"), "{e}");
        }
    }

    #[test]
    fn every_tier_has_a_profile_in_the_nextest_configuration() {
        let config = include_str!("../../../.config/nextest.toml");
        for t in Tier::ALL {
            assert!(config.contains(&format!("[profile.{}]", t.profile())), "{t:?}");
        }
    }
}
