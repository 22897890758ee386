//! A site: an instance that keeps its portal addresses across restarts (`kill -9` and start
//! again on the same data directory), where its peers expect it — the relay tests' building
//! block.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::{ANY_PORT, Instance};

/// The password of the users [`Site::add_user`] creates.
pub const RELAY_PASSWORD: &str = "relay-password-1";

/// One site: an instance on fixed ports, restartable on the same data directory.
pub struct Site {
    pub data: PathBuf,
    pub ops: SocketAddr,
    pub mgmt: SocketAddr,
    pub inst: Option<Instance>,
}

impl Site {
    /// Starts an instance on `root/name`.
    pub fn start(root: &Path, name: &str) -> Site {
        // The first start binds port 0 and reports its ports; restarts take them again.
        let mut s = Site { data: root.join(name), ops: ANY_PORT, mgmt: ANY_PORT, inst: None };
        s.restart();
        s
    }

    /// Starts the instance again on the same data directory and portal addresses.
    pub fn restart(&mut self) {
        let inst = Instance::start_on(&self.data, self.ops, self.mgmt, &[]);
        (self.ops, self.mgmt) = (inst.ops, inst.mgmt);
        self.inst = Some(inst);
    }

    /// The running instance.
    pub fn inst(&self) -> &Instance {
        self.inst.as_ref().expect("running")
    }

    /// `kill -9` of the instance, if it runs.
    pub fn kill9(&mut self) {
        if let Some(i) = self.inst.take() {
            i.kill9();
        }
    }

    /// The Operations Portal's URL (where relay links connect).
    pub fn url(&self) -> String {
        format!("http://{}", self.ops)
    }

    /// A user with [`RELAY_PASSWORD`]; `grants` are (channel, `push`|`pull`) pairs for a relay
    /// user.
    pub fn add_user(&self, name: &str, role: &str, grants: &[(&str, &str)]) {
        let grants: Vec<Value> =
            grants.iter().map(|(c, d)| json!({"channel_id": c, "direction": d})).collect();
        let body = json!({"username": name, "password": RELAY_PASSWORD, "role": role,
                          "must_change_password": false, "relay_grants": grants});
        let r = self.inst().api("POST", "/api/v1/users", Some(&body.to_string()));
        assert_eq!(r.status, 201, "{}", r.body);
    }

    /// Creates a pair.
    pub fn add_pair(&self, pair: &Value) {
        let r = self.inst().api("POST", "/api/v1/pairs", Some(&pair.to_string()));
        assert_eq!(r.status, 201, "{}", r.body);
    }

    /// The status of pair `id`.
    pub fn status(&self, id: &str) -> Value {
        self.inst().pair(id)
    }
}
