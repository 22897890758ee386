//! The REST API: every route against every role, CSRF and origin checks, the password-change
//! requirement, session revocation, login throttling, hostile input, and the OpenAPI document
//! (compared with the checked-in copy so API drift shows up in review).
//!
//! One module per story: `auth` (roles, sessions, CSRF and origins, the first start, login
//! throttling), `pairs`, `mqtt` (broker sides: settings, masked passwords, field paths),
//! `nats` (JetStream sides: settings, masked passwords and tokens, creds files, field paths),
//! `messages`, `users`, `relay` (tokens, upgrades, grants), `system` (audit trail, metrics,
//! health, pages) and `openapi`; `support` holds the API in process
//! (both portals' routers on one engine and store) and the request builder every test uses.

mod auth;
mod messages;
mod modbus;
mod mqtt;
mod nats;
mod openapi;
mod pairs;
mod reconciliation;
mod relay;
mod support;
mod system;
mod users;
