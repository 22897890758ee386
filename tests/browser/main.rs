//! Both portals in a real headless Chromium, driven through `chromedriver` (the W3C
//! `WebDriver` protocol), against the real binary: first login and password change, the
//! Create Channel Pair form with the server's validation shown at the fields (and every TLS, serial, RS-485, Modbus
//! and backup-destination setting: created, stored, edited and saved unchanged), the Live View
//! (Source and Destination views), stop and start, status colours following a receiver going
//! down and coming back, the message browser and re-send, rejections, edit, delete with
//! confirmation, a Viewer's read-only view and the API refusing it, every Management
//! Dashboard page, a relay between two instances set up through both portals (relay user,
//! remote sides with and without url, HTTPS settings, peers and lag shown), and failover to a
//! backup destination and back (policy in the form, the active destination shown live).
//! Screenshots of the main pages go to `test-output/screenshots/` (a few also to
//! `docs/screenshots/`, for the README, when `IOBP_UPDATE_SCREENSHOTS` is set); one test
//! reports the first paint of the Operations Portal and the instance's memory with both
//! portals open. The main story of each portal runs again in headless Firefox through
//! `geckodriver` (screenshots prefixed `firefox-`).
//!
//! Chromium (`/usr/bin/chromium`, or `IOBP_CHROMIUM`) and chromedriver (on `PATH`, or
//! `IOBP_CHROMEDRIVER`), Firefox (`/usr/bin/firefox-esr`, or `IOBP_FIREFOX`) and geckodriver
//! (on `PATH` or in `~/.cargo/bin`, or `IOBP_GECKODRIVER`) must be installed: the tests fail,
//! never skip, without them. Every
//! wait polls for a condition with a deadline; each scenario has an overall time limit; the
//! browser and the instance are stopped however a test ends. The scenarios take turns (a
//! file lock), so that two browsers never compete for the CPU of a small CI machine.
//!
//! One module per story: `ops_portal`, `viewer`, `pair_form`, `relay`, `failover`, `astm`, `dead_letter`,
//! `mgmt_portal`, `login`, `manual` (the manual at `/docs`), `figures`, and `firefox` (the main story of each portal again in
//! Firefox); `support` holds the `WebDriver` session and what every story uses.

#![allow(clippy::too_many_lines)] // each scenario reads best as one story, step by step

#[path = "../util/mod.rs"]
mod util;

mod astm;
mod dead_letter;
mod failover;
mod figures;
mod firefox;
mod login;
mod manual;
mod mgmt_portal;
mod ops_portal;
mod pair_form;
mod relay;
mod support;
mod viewer;
