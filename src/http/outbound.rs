//! The one way the hub calls other servers it was configured or told about (function
//! endpoints, VAPI's control URLs): no redirects, since a 3xx could point anywhere past a
//! check made on the first URL, and no ambient proxy, since reqwest would otherwise read
//! HTTPS_PROXY and send the hub's requests somewhere else.

use std::time::Duration;

pub fn direct_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5))
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
        .unwrap_or_default()
}
