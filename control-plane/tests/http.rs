//! The control plane served on a real socket (port 0), driven by a real HTTP client.

use tokio::net::TcpListener;
use tokio::sync::oneshot;

#[tokio::test]
async fn healthz_answers_ok_on_a_real_listener_and_shuts_down_gracefully() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
    let addr = listener.local_addr().expect("local addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(keyplane_control_plane::serve(listener, async {
        let _ = stopped.await;
    }));

    let url = format!("http://{addr}/healthz");
    let (status, body) = tokio::task::spawn_blocking(move || {
        let mut response = ureq::get(&url).call().expect("GET /healthz");
        let body = response.body_mut().read_to_string().expect("body");
        (response.status().as_u16(), body)
    })
    .await
    .expect("client task");
    assert_eq!(status, 200);
    assert_eq!(body, r#"{"status":"ok"}"#);

    stop.send(()).expect("server still running");
    server.await.expect("server task").expect("clean shutdown");
}
