//! Users through the Management Dashboard's API. (Role changes ending sessions: `auth`;
//! relay grants: `relay`.)

use axum::http::StatusCode;
use iobp_web::Portal;
use serde_json::json;

use crate::support::setup;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_errors_name_their_field() {
    let api = setup().await;
    let admin = api.login(Portal::Mgmt, "ada").await;
    for (body, field) in [
        (json!({"username": "shorty", "password": "short", "role": "viewer"}), "password"),
        (
            json!({"username": "bad name!", "password": "long enough pw", "role": "viewer"}),
            "username",
        ),
        (json!({"username": "roleless", "password": "long enough pw", "role": "king"}), "role"),
    ] {
        let r = api.post("/api/v1/users").on(Portal::Mgmt).json(&body).by(&admin).send().await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        assert_eq!(r.body["problems"][0]["path"], field, "{}", r.body);
    }
}
