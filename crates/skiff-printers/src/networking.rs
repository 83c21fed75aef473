//! The networking.k8s.io group's printers.

use crate::cells::{age, format_label_selector, items, kind_name, name, none_if_empty, str_of};
use crate::{AGE, NAME, Printer, col};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

pub(crate) fn printer(resource: &str) -> Option<&'static Printer> {
    Some(match resource {
        "networkpolicies" => &NETWORKPOLICIES,
        "ingresses" => &INGRESSES,
        "ingressclasses" => &INGRESSCLASSES,
        _ => return None,
    })
}

static NETWORKPOLICIES: Printer = Printer {
    columns: &[
        NAME,
        col(
            "Pod-Selector",
            "string",
            0,
            "podSelector selects the pods to which this NetworkPolicy object applies.",
        ),
        AGE,
    ],
    row: |o, now| {
        vec![
            name(o),
            json!(format_label_selector(&o["spec"]["podSelector"])),
            age(o, now),
        ]
    },
};

static INGRESSES: Printer = Printer {
    columns: &[
        NAME,
        col(
            "Class",
            "string",
            0,
            "The name of the IngressClass resource.",
        ),
        col(
            "Hosts",
            "string",
            0,
            "Hosts that incoming requests are matched against before the ingress rule",
        ),
        col(
            "Address",
            "string",
            0,
            "Address is a list containing ingress points for the load-balancer",
        ),
        col(
            "Ports",
            "string",
            0,
            "Ports of TLS configurations that open",
        ),
        AGE,
    ],
    row: ingress_row,
};

fn ingress_row(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let hosts: Vec<&str> = items(&o["spec"]["rules"])
        .filter_map(|r| r["host"].as_str())
        .collect();
    let addrs: Vec<&str> = items(&o["status"]["loadBalancer"]["ingress"])
        .filter_map(|i| i["ip"].as_str().or(i["hostname"].as_str()))
        .collect();
    let ports = if o["spec"]["tls"].as_array().is_some_and(|t| !t.is_empty()) {
        "80, 443"
    } else {
        "80"
    };
    let hosts = if hosts.is_empty() {
        "*".to_string()
    } else {
        hosts.join(",")
    };
    vec![
        name(o),
        json!(none_if_empty(
            str_of(o, "/spec/ingressClassName").to_string()
        )),
        json!(hosts),
        json!(addrs.join(",")),
        json!(ports),
        age(o, now),
    ]
}

static INGRESSCLASSES: Printer = Printer {
    columns: &[
        NAME,
        col(
            "Controller",
            "string",
            0,
            "Controller that is responsible for handling this class",
        ),
        col(
            "Parameters",
            "string",
            0,
            "A reference to a resource with additional parameters",
        ),
        AGE,
    ],
    row: |o, now| {
        let p = &o["spec"]["parameters"];
        let params = if p.is_object() {
            kind_name(p, false)
        } else {
            "<none>".into()
        };
        vec![
            name(o),
            json!(str_of(o, "/spec/controller")),
            json!(params),
            age(o, now),
        ]
    },
};
