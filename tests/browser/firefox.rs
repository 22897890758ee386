//! The main story of each portal again in headless Firefox through geckodriver, so that the
//! pages are proven in both engines (screenshots prefixed `firefox-`).

use crate::mgmt_portal::management_dashboard_story;
use crate::ops_portal::operations_portal_story;
use crate::support::Kind;

/// The Operations Portal's story (`ops_portal`) in Firefox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_portal_in_firefox() {
    operations_portal_story(Kind::Firefox).await;
}

/// The Management Dashboard's story (`mgmt_portal`) in Firefox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn management_dashboard_in_firefox() {
    management_dashboard_story(Kind::Firefox).await;
}
