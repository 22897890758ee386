//! Telling the service manager how the instance is doing. Under systemd (a `Type=notify`
//! unit, `packaging/iobufferpro.service`): `READY=1` once the pairs run and both portals
//! listen, a `STATUS=` line (`systemctl status`: pairs running and in error), watchdog pings at
//! half the unit's `WatchdogSec=` from the runtime that runs the pairs (so a wedged runtime is
//! restarted), and `STOPPING=1` when a stop begins. Without systemd (`NOTIFY_SOCKET` unset)
//! nothing is sent. Under the Windows service control manager (`service::windows`,
//! `service run`): Running once ready, `StopPending` when a stop begins. Elsewhere these do
//! nothing.

use std::time::Duration;

use iobp_engine::Engine;

#[cfg(windows)]
pub mod windows;

/// `running 3 pair(s), 1 in error, 1 stopped`: what `systemctl status` shows.
#[cfg(target_os = "linux")]
pub fn status_line(engine: &Engine) -> String {
    use iobp_engine::Color;
    let snaps = engine.snapshots();
    let running = snaps.iter().filter(|s| s.channel != Color::White).count();
    let failing = snaps.iter().filter(|s| s.channel == Color::Red).count();
    let stopped = snaps.len() - running;
    format!("{running} pair(s) running, {failing} in error, {stopped} stopped")
}

/// The instance is ready: pairs started, portals listening.
pub fn ready(engine: &Engine) {
    #[cfg(target_os = "linux")]
    send(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status(&status_line(engine))]);
    #[cfg(windows)]
    windows::running();
    #[cfg(not(target_os = "linux"))]
    let _ = engine;
}

/// A stop began (systemd waits for the exit within the unit's `TimeoutStopSec=`).
pub fn stopping() {
    #[cfg(target_os = "linux")]
    send(&[sd_notify::NotifyState::Stopping, sd_notify::NotifyState::Status("stopping")]);
    #[cfg(windows)]
    windows::stopping();
}

/// Until the process ends: the status line every 10 s, with a watchdog ping (at half the
/// unit's `WatchdogSec=` when that is shorter).
pub async fn keep_telling(engine: Engine) {
    let watchdog = watchdog_interval();
    let every = watchdog.map_or(Duration::from_secs(10), |w| w.min(Duration::from_secs(10)));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        #[cfg(target_os = "linux")]
        {
            let line = status_line(&engine);
            let mut notes = vec![sd_notify::NotifyState::Status(&line)];
            if watchdog.is_some() {
                notes.push(sd_notify::NotifyState::Watchdog);
            }
            send(&notes);
        }
        #[cfg(not(target_os = "linux"))]
        let _ = &engine;
    }
}

/// Half the watchdog timeout the service manager asked for, if it did (for this process).
fn watchdog_interval() -> Option<Duration> {
    #[cfg(target_os = "linux")]
    return sd_notify::watchdog_enabled().map(|d| d / 2).filter(|d| !d.is_zero());
    #[cfg(not(target_os = "linux"))]
    None
}

#[cfg(target_os = "linux")]
fn send(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!("telling systemd ({states:?}): {e}");
    }
}
