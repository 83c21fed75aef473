//! Against a real containerd (root; Debian's containerd, runc and busybox-static): the
//! supervisor starts it from the generated config, the built pause image imports, and a
//! host-network sandbox with one container runs and is removed.

use skiff_cri::{Cri, containerd, cri, image, rpc};
use std::time::Duration;

#[tokio::test]
async fn supervised_containerd_runs_a_sandbox_and_container() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = containerd::Config {
        dir: dir.path().join("containerd"),
        sandbox_image: "registry.skiff.local/pause:test".into(),
        cni_bin_dir: "/usr/lib/cni".into(),
        cni_conf_dir: dir.path().join("net.d"),
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let sup = tokio::spawn(containerd::supervise(cfg.clone(), stop_rx));
    let mut c = Cri::wait_ready(cfg.socket().to_str().unwrap(), Duration::from_secs(30))
        .await
        .unwrap();
    let v = c.version().await.unwrap();
    assert_eq!(v.runtime_name, "containerd");

    let pause = image::pause_image(&cfg.sandbox_image, "/bin/busybox".as_ref()).unwrap();
    let archive = dir.path().join("pause.tar");
    image::write_oci_archive(&pause, &archive).unwrap();
    image::import(&cfg.socket(), &archive).await.unwrap();
    let st = rpc(
        "ImageStatus",
        c.images.image_status(cri::ImageStatusRequest {
            image: Some(cri::ImageSpec {
                image: cfg.sandbox_image.clone(),
                ..Default::default()
            }),
            verbose: false,
        }),
    )
    .await
    .unwrap();
    assert!(st.image.is_some(), "imported image not seen by CRI");

    let sandbox_config = cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: "t".into(),
            uid: "uid-t".into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        log_directory: dir.path().join("logs").display().to_string(),
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    network: cri::NamespaceMode::Node as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let sb = rpc(
        "RunPodSandbox",
        c.runtime.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(sandbox_config.clone()),
            runtime_handler: String::new(),
        }),
    )
    .await
    .unwrap()
    .pod_sandbox_id;
    let ctr = rpc(
        "CreateContainer",
        c.runtime.create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sb.clone(),
            config: Some(cri::ContainerConfig {
                metadata: Some(cri::ContainerMetadata {
                    name: "c".into(),
                    attempt: 0,
                }),
                image: Some(cri::ImageSpec {
                    image: cfg.sandbox_image.clone(),
                    ..Default::default()
                }),
                command: vec!["/bin/sh".into(), "-c".into(), "echo hello; exit 3".into()],
                log_path: "c/0.log".into(),
                ..Default::default()
            }),
            sandbox_config: Some(sandbox_config),
        }),
    )
    .await
    .unwrap()
    .container_id;
    rpc(
        "StartContainer",
        c.runtime.start_container(cri::StartContainerRequest {
            container_id: ctr.clone(),
        }),
    )
    .await
    .unwrap();
    let mut exit = None;
    for _ in 0..100 {
        let s = rpc(
            "ContainerStatus",
            c.runtime.container_status(cri::ContainerStatusRequest {
                container_id: ctr.clone(),
                verbose: false,
            }),
        )
        .await
        .unwrap()
        .status
        .unwrap();
        if s.state == cri::ContainerState::ContainerExited as i32 {
            exit = Some(s.exit_code);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(exit, Some(3));
    let log = std::fs::read_to_string(dir.path().join("logs/c/0.log")).unwrap();
    assert!(log.contains("stdout F hello"), "{log}");

    rpc(
        "StopPodSandbox",
        c.runtime.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: sb.clone(),
        }),
    )
    .await
    .unwrap();
    rpc(
        "RemovePodSandbox",
        c.runtime
            .remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: sb }),
    )
    .await
    .unwrap();
    let left = rpc(
        "ListPodSandbox",
        c.runtime
            .list_pod_sandbox(cri::ListPodSandboxRequest::default()),
    )
    .await
    .unwrap();
    assert!(left.items.is_empty());
    stop_tx.send(true).unwrap();
    sup.await.unwrap().unwrap();
}
