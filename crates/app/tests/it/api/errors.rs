//! Under `/api/v1` every error is JSON `{"error": {"code", "message"}}`: unknown routes,
//! wrong methods, bad parameters and bodies.

use super::seeded;
use crate::helpers::error_body;

#[tokio::test]
async fn every_error_under_the_prefix_is_json() {
    let seeded = seeded().await;
    let client = &seeded.app.client;
    let url = |path: &str| seeded.app.url(path);

    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (client.get(url("/api/v1/nothing-here")), 404, "not_found"),
        (client.get(url("/api/v1/")), 404, "not_found"),
        (
            client.delete(url("/api/v1/health")),
            405,
            "method_not_allowed",
        ),
        (
            client.get(url("/api/v1/dead-letters/replay")),
            405,
            "method_not_allowed",
        ),
        (client.get(url("/api/v1/runs?limit=0")), 400, "bad_query"),
        (client.get(url("/api/v1/runs?limit=many")), 400, "bad_query"),
        (
            client.get(url("/api/v1/runs?status=sleeping")),
            400,
            "bad_query",
        ),
        (
            client.get(url("/api/v1/runs?before=evt_1")),
            400,
            "bad_run_id",
        ),
        (client.get(url("/api/v1/runs/42")), 400, "bad_run_id"),
        (client.get(url("/api/v1/objects")), 400, "bad_query"),
        (client.get(url("/api/v1/objects?q=%20")), 400, "bad_query"),
        (
            client.get(url("/api/v1/dead-letters?include_replayed=maybe")),
            400,
            "bad_query",
        ),
        (client.get(url("/api/v1/dead-letters/abc")), 400, "bad_path"),
        (
            client.get(url("/api/v1/dead-letters/999999")),
            404,
            "not_found",
        ),
        (
            client.post(url("/api/v1/dead-letters/abc/replay")),
            400,
            "bad_path",
        ),
        (
            client
                .post(url("/api/v1/dead-letters/replay"))
                .header("content-type", "application/json")
                .body("{\"ids\": "),
            400,
            "bad_body",
        ),
        (
            client
                .post(url("/api/v1/dead-letters/replay"))
                .json(&serde_json::json!({ "ids": [] })),
            400,
            "bad_body",
        ),
        (
            client
                .post(url("/api/v1/dead-letters/replay"))
                .json(&serde_json::json!({ "id": [1] })),
            400,
            "bad_body",
        ),
        (
            client
                .post(url("/api/v1/dead-letters/replay"))
                .body("ids=1"),
            415,
            "unsupported_media_type",
        ),
    ];
    for (request, status, code) in cases {
        let request = request.bearer_auth(&seeded.token).build().unwrap();
        let what = format!("{} {}", request.method(), request.url());
        let response = client.execute(request).await.unwrap();
        assert_eq!(
            error_body(response).await,
            (status, code.to_owned()),
            "{what}"
        );
    }
}
