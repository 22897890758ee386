//! ioBufferPro as a Windows service: `iobufferpro service install|uninstall|start|stop`, and
//! the hidden `service run` that the service control manager (SCM) launches.
//!
//! The contract:
//! - **install** (as Administrator) registers the service `ioBufferPro`: this executable with
//!   the arguments `service run --data-dir DIR` (the data directory resolved at install and
//!   made absolute, so that the service uses the directory install prepared whatever its own
//!   environment says), in its own process, as `LocalSystem`, started automatically with
//!   Windows, with the package description. A failed run is restarted by the SCM after 5 s,
//!   then after 60 s, then left stopped (the counter resets after a day), like the systemd
//!   unit's `Restart=on-failure`.
//!   Before registering, install creates the data directory and gives it to SYSTEM and the
//!   Administrators only (`icacls`): the counterpart of the 0700 directory on Linux, since the
//!   buffers hold message payloads and the store relay passwords, and a directory under
//!   `%ProgramData%` is otherwise readable by every local user.
//! - **data** lives in `%ProgramData%\ioBufferPro` (`data_dir::resolve`, from the `ProgramData`
//!   variable of the installing Administrator, no drive letter assumed) unless install was
//!   given `--data-dir`.
//! - **service run** connects to the SCM (`service_dispatcher::start`), reports `StartPending`
//!   and runs the normal `run::main`. Once the pairs run and both portals listen (where systemd
//!   gets `READY=1`, see `service::ready`) it reports Running and accepts Stop and Shutdown.
//! - **Stop and Shutdown** report `StopPending` and wake the same graceful path as Ctrl-C and
//!   SIGTERM (`run::wait_for_signal`): sources stop accepting, running appends finish, buffers
//!   are checkpointed; then Stopped. A run that ends in an error reports Stopped with the
//!   service-specific exit code 1, so the failure actions above apply.
//! - **logs**: a service has no console. `service.log` in the data directory gets a line for
//!   every start and stop and the error that ended a run; everything else the instance logs is
//!   on the Management Dashboard's Logs page (the latest lines, kept in memory). The first
//!   admin password is in the data directory's `initial-admin-password.txt`, as on Linux.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use windows_service::service::{
    Service, ServiceAccess, ServiceAction, ServiceActionType, ServiceControl, ServiceControlAccept,
    ServiceErrorControl, ServiceExitCode, ServiceFailureActions, ServiceFailureResetPeriod,
    ServiceInfo, ServiceStartType, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{
    self, ServiceControlHandlerResult, ServiceStatusHandle,
};
use windows_service::service_dispatcher;
use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};

use crate::run::RunArgs;

/// The service's name for the SCM (`sc query ioBufferPro`, `net stop ioBufferPro`).
pub const SERVICE_NAME: &str = "ioBufferPro";
/// Where a service run notes its starts, stops and the error that ended it (in the data
/// directory).
pub const SERVICE_LOG: &str = "service.log";
/// How long a start may take, as the systemd unit's `TimeoutStartSec=`: recovering the buffers
/// after a crash reads their segments.
const START_WAIT: Duration = Duration::from_secs(120);
/// How long a stop may take, as the systemd unit's `TimeoutStopSec=`.
const STOP_WAIT: Duration = Duration::from_secs(45);

// The Win32 error codes that get an explanation for the operator.
const ERROR_ACCESS_DENIED: i32 = 5;
const ERROR_SERVICE_ALREADY_RUNNING: i32 = 1056;
const ERROR_SERVICE_DOES_NOT_EXIST: i32 = 1060;
const ERROR_SERVICE_CANNOT_ACCEPT_CTRL: i32 = 1061;
const ERROR_SERVICE_NOT_ACTIVE: i32 = 1062;
const ERROR_FAILED_SERVICE_CONTROLLER_CONNECT: i32 = 1063;
const ERROR_SERVICE_MARKED_FOR_DELETE: i32 = 1072;
const ERROR_SERVICE_EXISTS: i32 = 1073;

#[derive(Debug, clap::Subcommand)]
pub enum ServiceCommand {
    /// Register the Windows service `ioBufferPro`: this executable, started with Windows, as
    /// `LocalSystem`. Run as Administrator, from where the executable is to stay.
    Install {
        /// The service's data directory (default: %ProgramData%\ioBufferPro).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Stop the service if it runs and remove it. The data directory is kept.
    Uninstall,
    /// Start the service and wait until it runs.
    Start,
    /// Stop the service and wait until it has stopped.
    Stop,
    /// What the service control manager launches (in a console, use `iobufferpro run`).
    #[command(hide = true)]
    Run(RunArgs),
}

pub fn main(cmd: ServiceCommand) -> anyhow::Result<()> {
    match cmd {
        ServiceCommand::Install { data_dir } => install(data_dir),
        ServiceCommand::Uninstall => uninstall(),
        ServiceCommand::Start => start(),
        ServiceCommand::Stop => stop(),
        ServiceCommand::Run(args) => dispatch(args),
    }
}

fn install(data_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find the path of this executable")?;
    // The directory is resolved here, once, and stored with the service even when it is the
    // default: the service's environment is not the installing Administrator's (under Wine,
    // for one, services see another %ProgramData%), and the directory restricted here must be
    // the one the service uses. Absolute, since the SCM starts services in System32.
    let dir = crate::data_dir::resolve(data_dir);
    let dir =
        std::path::absolute(&dir).with_context(|| format!("data directory {}", dir.display()))?;
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    restrict_to_system_and_administrators(&dir)?;

    let launch_arguments: Vec<OsString> =
        vec!["service".into(), "run".into(), "--data-dir".into(), dir.clone().into_os_string()];
    let info = ServiceInfo {
        name: SERVICE_NAME.into(),
        display_name: SERVICE_NAME.into(),
        service_type: ServiceType::OWN_PROCESS,
        start_type: ServiceStartType::AutoStart,
        error_control: ServiceErrorControl::Normal,
        executable_path: exe.clone(),
        launch_arguments,
        dependencies: vec![],
        // `LocalSystem`: serial ports and any listen address without further grants.
        account_name: None,
        account_password: None,
    };
    let manager = manager(ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE)?;
    let service = manager
        .create_service(&info, ServiceAccess::CHANGE_CONFIG | ServiceAccess::START)
        .map_err(|e| scm_error(e, "cannot register the service"))?;
    // A restart among the failure actions needs the START right on the handle.
    let configure = || -> windows_service::Result<()> {
        service.set_description(env!("CARGO_PKG_DESCRIPTION"))?;
        let restart = |secs| ServiceAction {
            action_type: ServiceActionType::Restart,
            delay: Duration::from_secs(secs),
        };
        let give_up = ServiceAction { action_type: ServiceActionType::None, delay: Duration::ZERO };
        service.update_failure_actions(ServiceFailureActions {
            reset_period: ServiceFailureResetPeriod::After(Duration::from_secs(24 * 3600)),
            reboot_msg: None,
            command: None,
            actions: Some(vec![restart(5), restart(60), give_up]),
        })?;
        // A run that ends in an error exits cleanly after reporting Stopped with exit code 1:
        // without this flag, only a crash would count as a failure.
        service.set_failure_actions_on_non_crash_failures(true)
    };
    // The service works without these: say so rather than fail an install that is done.
    if let Err(e) = configure() {
        eprintln!(
            "warning: the service is registered, but its description or restart policy could \
             not be set: {:#}",
            anyhow::Error::new(e)
        );
    }
    println!(
        "installed the Windows service {SERVICE_NAME}: {} service run --data-dir {}",
        exe.display(),
        dir.display()
    );
    println!("the data directory is for SYSTEM and the Administrators only");
    println!("start it now with `iobufferpro service start`; it starts with Windows from now on");
    Ok(())
}

/// Takes the inherited permissions off the data directory and gives full control to SYSTEM
/// (the service) and the Administrators only, for everything in it too. The well-known SIDs
/// (`S-1-5-18`, `S-1-5-32-544`) work whatever the language of Windows.
fn restrict_to_system_and_administrators(dir: &Path) -> anyhow::Result<()> {
    let out = std::process::Command::new("icacls")
        .arg(dir)
        .args(["/inheritance:r", "/grant:r", "*S-1-5-18:(OI)(CI)F", "*S-1-5-32-544:(OI)(CI)F"])
        .output()
        .context("cannot run icacls to restrict the data directory")?;
    if !out.status.success() {
        bail!(
            "icacls could not restrict {} to SYSTEM and Administrators: {}{}",
            dir.display(),
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn uninstall() -> anyhow::Result<()> {
    let manager = manager(ServiceManagerAccess::CONNECT)?;
    let access = ServiceAccess::QUERY_STATUS | ServiceAccess::STOP | ServiceAccess::DELETE;
    let service = manager
        .open_service(SERVICE_NAME, access)
        .map_err(|e| scm_error(e, "cannot open the service"))?;
    stop_and_wait(&service)?;
    service.delete().map_err(|e| scm_error(e, "cannot remove the service"))?;
    println!("removed the Windows service {SERVICE_NAME}; its data directory is kept");
    Ok(())
}

fn start() -> anyhow::Result<()> {
    let manager = manager(ServiceManagerAccess::CONNECT)?;
    let service = manager
        .open_service(SERVICE_NAME, ServiceAccess::QUERY_STATUS | ServiceAccess::START)
        .map_err(|e| scm_error(e, "cannot open the service"))?;
    match service.start::<&str>(&[]) {
        Ok(()) => {}
        Err(e) if os_error(&e) == Some(ERROR_SERVICE_ALREADY_RUNNING) => {
            println!("{SERVICE_NAME} is already running");
            return Ok(());
        }
        Err(e) => return Err(scm_error(e, "cannot start the service")),
    }
    // Some margin over the start's own wait hint: the SCM, not this command, decides.
    let status = wait_for(&service, ServiceState::Running, START_WAIT + Duration::from_secs(10))?;
    if status.current_state != ServiceState::Running {
        let code = match status.exit_code {
            ServiceExitCode::ServiceSpecific(n) => format!("exit code {n}"),
            ServiceExitCode::Win32(n) => format!("Windows error {n}"),
        };
        bail!("{SERVICE_NAME} stopped while starting ({code}): see {SERVICE_LOG} in its data dir");
    }
    println!("{SERVICE_NAME} is running");
    Ok(())
}

fn stop() -> anyhow::Result<()> {
    let manager = manager(ServiceManagerAccess::CONNECT)?;
    let service = manager
        .open_service(SERVICE_NAME, ServiceAccess::QUERY_STATUS | ServiceAccess::STOP)
        .map_err(|e| scm_error(e, "cannot open the service"))?;
    stop_and_wait(&service)?;
    println!("{SERVICE_NAME} is stopped");
    Ok(())
}

/// Asks a running service to stop (unless it is stopped or stopping already) and waits until
/// it has.
fn stop_and_wait(service: &Service) -> anyhow::Result<()> {
    let status = service.query_status().map_err(|e| scm_error(e, "cannot query the service"))?;
    match status.current_state {
        ServiceState::Stopped => return Ok(()),
        ServiceState::StopPending => {}
        _ => match service.stop() {
            Ok(_) => {}
            // It stopped between the query and the request.
            Err(e) if os_error(&e) == Some(ERROR_SERVICE_NOT_ACTIVE) => return Ok(()),
            Err(e) => return Err(scm_error(e, "cannot stop the service")),
        },
    }
    wait_for(service, ServiceState::Stopped, STOP_WAIT + Duration::from_secs(10)).map(|_| ())
}

/// Polls the service until it is in `want` or stopped; an error after `within`.
fn wait_for(
    service: &Service,
    want: ServiceState,
    within: Duration,
) -> anyhow::Result<ServiceStatus> {
    let deadline = Instant::now() + within;
    loop {
        let status =
            service.query_status().map_err(|e| scm_error(e, "cannot query the service"))?;
        if status.current_state == want || status.current_state == ServiceState::Stopped {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            bail!(
                "{SERVICE_NAME} is still {:?} after {} s",
                status.current_state,
                within.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn manager(access: ServiceManagerAccess) -> anyhow::Result<ServiceManager> {
    ServiceManager::local_computer(None::<&str>, access)
        .map_err(|e| scm_error(e, "cannot connect to the Windows service manager"))
}

fn os_error(e: &windows_service::Error) -> Option<i32> {
    match e {
        windows_service::Error::Winapi(io) => io.raw_os_error(),
        _ => None,
    }
}

/// The SCM's error with what was being done and, for the usual causes, what to do.
fn scm_error(e: windows_service::Error, what: &str) -> anyhow::Error {
    let hint = match os_error(&e) {
        Some(ERROR_ACCESS_DENIED) => " (run this as Administrator)",
        Some(ERROR_SERVICE_DOES_NOT_EXIST) => {
            " (it is not installed: `iobufferpro service install`)"
        }
        Some(ERROR_SERVICE_CANNOT_ACCEPT_CTRL) => " (it is starting: retry once it runs)",
        Some(ERROR_SERVICE_EXISTS) => {
            " (it is installed already: `iobufferpro service uninstall` first)"
        }
        Some(ERROR_SERVICE_MARKED_FOR_DELETE) => {
            " (it is being removed: close the Services console and any `sc` session, then retry)"
        }
        _ => "",
    };
    anyhow::Error::new(e).context(format!("{what}{hint}"))
}

// ---- `service run`: the process the SCM launched -------------------------------------------

/// The arguments of `service run`, for `service_main`: the SCM calls it on a thread of its own
/// with no way to pass them.
static RUN_ARGS: Mutex<Option<RunArgs>> = Mutex::new(None);
/// Set once `service_main` registered with the SCM: only then are there states to report.
static STATUS: OnceLock<ServiceStatusHandle> = OnceLock::new();
/// Woken by the SCM's Stop or Shutdown; a wake-up before anyone waits is kept.
static STOP: tokio::sync::Notify = tokio::sync::Notify::const_new();
/// Progress during `StartPending` and `StopPending`: the SCM reads a rising checkpoint as alive.
static CHECKPOINT: AtomicU32 = AtomicU32::new(0);

windows_service::define_windows_service!(ffi_service_main, service_main);

/// Hands this thread to the SCM's dispatcher until the service has stopped.
fn dispatch(args: RunArgs) -> anyhow::Result<()> {
    *RUN_ARGS.lock().unwrap_or_else(PoisonError::into_inner) = Some(args);
    service_dispatcher::start(SERVICE_NAME, ffi_service_main).map_err(|e| {
        if os_error(&e) == Some(ERROR_FAILED_SERVICE_CONTROLLER_CONNECT) {
            anyhow::anyhow!(
                "`service run` is for the Windows service manager: use `iobufferpro service \
                 start`, or `iobufferpro run` in a console"
            )
        } else {
            scm_error(e, "cannot connect to the Windows service manager")
        }
    })
}

/// The service's life, on the thread the SCM gives it: register, run, report how it ended.
/// The start parameters (`sc start ioBufferPro ...`) are ignored: the configuration comes from
/// the launch arguments and the data directory.
fn service_main(_start_parameters: Vec<OsString>) {
    let args = RUN_ARGS.lock().unwrap_or_else(PoisonError::into_inner).take();
    let dir = crate::data_dir::resolve(args.as_ref().and_then(|a| a.data_dir.clone()));
    let handle = match service_control_handler::register(SERVICE_NAME, on_control) {
        Ok(h) => h,
        Err(e) => {
            // Without a status handle there is no one to tell but the log.
            note(&dir, &format!("cannot register with the Windows service manager: {e}"));
            return;
        }
    };
    let _ = STATUS.set(handle);
    report(ServiceState::StartPending, START_WAIT, ServiceExitCode::NO_ERROR);
    let Some(args) = args else {
        note(&dir, "started without its arguments");
        report(ServiceState::Stopped, Duration::ZERO, ServiceExitCode::ServiceSpecific(1));
        return;
    };
    note(
        &dir,
        &format!(
            "ioBufferPro {} starting (process {})",
            env!("CARGO_PKG_VERSION"),
            std::process::id()
        ),
    );
    let exit = match crate::run::main(args) {
        Ok(()) => {
            note(&dir, "stopped cleanly");
            ServiceExitCode::NO_ERROR
        }
        Err(e) => {
            note(&dir, &format!("stopped with an error: {e:#}"));
            ServiceExitCode::ServiceSpecific(1)
        }
    };
    report(ServiceState::Stopped, Duration::ZERO, exit);
}

/// The SCM's controls. A plain function, not a closure: the crate frees the handler's state
/// when it passes on Stop or Shutdown, and a function has none that a later control could
/// reach.
fn on_control(control: ServiceControl) -> ServiceControlHandlerResult {
    match control {
        ServiceControl::Stop | ServiceControl::Shutdown | ServiceControl::Preshutdown => {
            // `StopPending` at once (the SCM and `sc query` see the stop begin); the run's
            // graceful shutdown takes it from here.
            report(ServiceState::StopPending, STOP_WAIT, ServiceExitCode::NO_ERROR);
            STOP.notify_one();
            ServiceControlHandlerResult::NoError
        }
        // Every service answers Interrogate: the SCM then keeps the last reported status.
        ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
        _ => ServiceControlHandlerResult::NotImplemented,
    }
}

/// The instance is ready (pairs started, portals listening): Running, and Stop and Shutdown
/// are accepted from now on. Outside the SCM (`iobufferpro run`), nothing happens.
pub fn running() {
    report(ServiceState::Running, Duration::ZERO, ServiceExitCode::NO_ERROR);
}

/// A stop began.
pub fn stopping() {
    report(ServiceState::StopPending, STOP_WAIT, ServiceExitCode::NO_ERROR);
}

/// Resolves when the SCM asked for a stop; outside the SCM, never.
pub async fn stop_requested() {
    STOP.notified().await;
}

fn report(state: ServiceState, wait_hint: Duration, exit_code: ServiceExitCode) {
    let Some(handle) = STATUS.get() else { return };
    let pending = matches!(state, ServiceState::StartPending | ServiceState::StopPending);
    let status = ServiceStatus {
        service_type: ServiceType::OWN_PROCESS,
        current_state: state,
        // Only a running service takes a stop: while it starts there is nothing to stop
        // gracefully yet, and a stop in progress is not started twice.
        controls_accepted: if state == ServiceState::Running {
            ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN
        } else {
            ServiceControlAccept::empty()
        },
        exit_code,
        // Zero outside a pending state, as the SCM requires.
        checkpoint: if pending { CHECKPOINT.fetch_add(1, Ordering::Relaxed) + 1 } else { 0 },
        wait_hint: if pending { wait_hint } else { Duration::ZERO },
        process_id: None,
    };
    if let Err(e) = handle.set_service_status(status) {
        tracing::warn!("telling the Windows service manager ({state:?}): {e}");
    }
}

/// Appends a line, with the time (UTC), to the data directory's `service.log`. Failures are
/// ignored: a service has nowhere else to say anything.
fn note(dir: &Path, line: &str) {
    use std::io::Write as _;
    use tracing_subscriber::fmt::format::Writer;
    use tracing_subscriber::fmt::time::{FormatTime as _, SystemTime};
    let mut stamp = String::new();
    let _ = SystemTime.format_time(&mut Writer::new(&mut stamp));
    let _ = std::fs::create_dir_all(dir);
    let file = std::fs::OpenOptions::new().create(true).append(true).open(dir.join(SERVICE_LOG));
    if let Ok(mut f) = file {
        let _ = writeln!(f, "{stamp} {line}");
    }
}
