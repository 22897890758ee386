//! System settings (Admin changes them; everyone logged in may read them).

use axum::extract::{Request, State};
use serde::Serialize;
use utoipa::ToSchema;

use super::raw_body;
use super::responses::{Malformed, Session, SessionWrite, TooLarge};
use crate::WebState;
use crate::auth::{Admin, Auth, Viewer, now_ms};
use crate::error::{ApiError, ApiResult, ErrorBody};

/// Settings that take effect only after a restart.
const RESTART_FIELDS: &[&str] = &["ops_listen", "mgmt_listen", "tls_cert", "tls_key"];

/// The settings in force, and which of them need a restart to change.
#[derive(Debug, Serialize, ToSchema)]
pub struct SettingsDto {
    /// `max_storage_mb`, `retention_hours`, `log_level`, `ops_listen`, `mgmt_listen`.
    #[schema(value_type = Object)]
    pub settings: serde_json::Value,
    /// Fields that take effect only when ioBufferPro restarts.
    pub restart_fields: Vec<String>,
    /// After a change: the fields whose new value waits for a restart.
    pub restart_required: Vec<String>,
    /// The Operations Portal's address in force now (the command line may override the
    /// stored one).
    pub ops_listen_active: String,
    /// The Management Dashboard's address in force now.
    pub mgmt_listen_active: String,
}

fn dto(
    s: &iobp_config::Settings,
    active: &iobp_config::Settings,
    restart_required: Vec<String>,
) -> ApiResult<SettingsDto> {
    Ok(SettingsDto {
        settings: serde_json::to_value(s).map_err(ApiError::internal)?,
        restart_fields: RESTART_FIELDS.iter().map(|f| (*f).to_string()).collect(),
        restart_required,
        ops_listen_active: active.ops_listen.clone(),
        mgmt_listen_active: active.mgmt_listen.clone(),
    })
}

/// The settings.
#[utoipa::path(get, path = "/api/v1/settings", tag = "system",
    responses(Session, (status = 200, body = SettingsDto)))]
pub(crate) async fn get_settings(
    State(s): State<WebState>,
    _auth: Auth<Viewer>,
) -> ApiResult<axum::Json<SettingsDto>> {
    // The stored settings: what the next start uses (the listen addresses in force may have
    // been overridden on the command line).
    let stored = s.store.load_settings()?;
    Ok(axum::Json(dto(&stored, &s.engine.settings(), Vec::new())?))
}

/// Replaces the settings. Storage limit, retention and log level apply at once; the portal
/// addresses at the next start.
#[utoipa::path(put, path = "/api/v1/settings", tag = "system",
    request_body(content = Object, description = "All settings (missing fields take their defaults)"),
    responses(
        SessionWrite, Malformed, TooLarge,
        (status = 200, body = SettingsDto),
        (status = 422, description = "Invalid: each problem names its field", body = ErrorBody),
    ))]
pub(crate) async fn put_settings(
    State(s): State<WebState>,
    auth: Auth<Admin>,
    req: Request,
) -> ApiResult<axum::Json<SettingsDto>> {
    let text = raw_body(req, &s).await?;
    let new = iobp_config::parse_settings(&text).map_err(|e| ApiError::invalid(&e))?;
    let old = s.store.load_settings()?;
    // The portal addresses must not collide with the pairs' listeners either.
    let doc =
        iobp_config::ConfigDocument { settings: Some(new.clone()), channel_pairs: s.engine.list() };
    doc.validate(&new).map_err(|e| ApiError::invalid(&e))?;
    // A certificate that does not load would lock everyone out at the next start.
    if let (Some(cert), Some(key)) = (&new.tls_cert, &new.tls_key) {
        iobp_tls::server_config(std::path::Path::new(cert), std::path::Path::new(key)).map_err(
            |e| {
                ApiError::invalid(&iobp_config::ConfigError {
                    problems: vec![iobp_config::Problem {
                        path: "tls_cert".into(),
                        message: e.to_string(),
                    }],
                })
            },
        )?;
    }
    let mut in_force = new.clone();
    let current = s.engine.settings();
    in_force.ops_listen = current.ops_listen;
    in_force.mgmt_listen = current.mgmt_listen;
    s.engine.update_settings(in_force.clone())?;
    s.store.save_settings(&new)?;
    // Validated above: one of the levels the log filter knows.
    s.logs.set_level(&new.log_level);
    let restart_required: Vec<String> = [
        ("ops_listen", old.ops_listen != new.ops_listen),
        ("mgmt_listen", old.mgmt_listen != new.mgmt_listen),
        ("tls_cert", old.tls_cert != new.tls_cert),
        ("tls_key", old.tls_key != new.tls_key),
    ]
    .iter()
    .filter(|(_, changed)| *changed)
    .map(|(f, _)| (*f).to_string())
    .collect();
    s.store.audit(
        &auth.audit("settings.update", None, Some(text.chars().take(2000).collect())),
        now_ms(),
    )?;
    Ok(axum::Json(dto(&new, &in_force, restart_required)?))
}
