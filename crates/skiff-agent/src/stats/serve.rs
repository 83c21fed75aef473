//! The statistics endpoints' answers on the agent's port.

use super::{Stats, prom, summary};
use crate::server::{Body, text};
use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::{BodyExt, Full};

const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

fn with_type(content_type: &'static str, body: Vec<u8>) -> Response<Body> {
    Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from(body)).map_err(|e| match e {}).boxed())
        .expect("valid response")
}

fn failed(e: skiff_cri::Error) -> Response<Body> {
    text(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("failed to get node info: {e}"),
    )
}

pub async fn summary(stats: &Stats, only_cpu_and_memory: bool) -> Response<Body> {
    match stats.summary().await {
        Ok(s) => {
            let s = if only_cpu_and_memory {
                summary::only_cpu_and_memory((*s).clone())
            } else {
                (*s).clone()
            };
            let body = serde_json::to_vec_pretty(&s).unwrap_or_default();
            with_type("application/json", body)
        }
        Err(e) => failed(e),
    }
}

pub async fn resource(stats: &Stats) -> Response<Body> {
    match stats.summary().await {
        Ok(s) => with_type(PROMETHEUS_TEXT, prom::resource_metrics(&s).into_bytes()),
        Err(e) => failed(e),
    }
}

pub async fn agent(stats: &Stats) -> Response<Body> {
    let s = stats.summary().await.unwrap_or_default();
    let process = tokio::task::spawn_blocking(prom::Process::read)
        .await
        .unwrap_or_default();
    with_type(
        PROMETHEUS_TEXT,
        prom::agent_metrics(&s, &process).into_bytes(),
    )
}
