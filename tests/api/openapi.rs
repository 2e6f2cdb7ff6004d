//! `GET /openapi.json` describes exactly what the router serves: every described path exists
//! (another method gets `405`, not `404`) and every described method is routed.

use switchboard::http::openapi::ROUTES;

use crate::helpers::*;

#[tokio::test]
async fn every_described_route_is_served_with_its_method() {
    let app = spawn_app().await;
    let unknown = app.http.request(reqwest::Method::PATCH, app.url("/api/not-a-route")).send().await.unwrap();
    assert_eq!(unknown.status(), 404, "an undescribed path is not found, so 405 proves a path exists");
    for r in ROUTES {
        let path: String = r.path.split('/').map(|seg| if seg.starts_with('{') { "x" } else { seg }).collect::<Vec<_>>().join("/");
        let other = app.http.request(reqwest::Method::PATCH, app.url(&path)).send().await.unwrap();
        assert_eq!(other.status(), 405, "PATCH {path}: the described path is routed");
        let method: reqwest::Method = r.method.to_uppercase().parse().unwrap();
        let own = app.http.request(method, app.url(&path)).send().await.unwrap();
        assert_ne!(own.status(), 405, "{} {path} is routed", r.method);
    }
    app.shutdown().await;
}

#[tokio::test]
async fn the_description_is_openapi_3_1_with_every_path() {
    let app = spawn_app().await;
    let r = app.http.get(app.url("/openapi.json")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let doc: serde_json::Value = r.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    for r in ROUTES {
        assert!(paths[r.path][r.method].is_object(), "{} {}", r.method, r.path);
    }
    assert_eq!(doc["paths"]["/api/calls"]["get"]["security"][0]["token"], serde_json::json!([]));
    app.shutdown().await;
}
