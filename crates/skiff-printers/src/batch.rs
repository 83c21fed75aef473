//! Jobs and CronJobs.

use crate::cells::{
    age, condition_true, format_label_selector, human_duration, int_of, name, none_if_empty,
    parse_time, since, str_of, template_cells,
};
use crate::{AGE, CONTAINERS, IMAGES, NAME, Printer, SELECTOR, col};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

pub(crate) fn printer(resource: &str) -> Option<&'static Printer> {
    Some(match resource {
        "jobs" => &JOBS,
        "cronjobs" => &CRONJOBS,
        _ => return None,
    })
}

static JOBS: Printer = Printer {
    columns: &[
        NAME,
        col("Status", "string", 0, "Status of the job."),
        col(
            "Completions",
            "string",
            0,
            "The completion status of the job.",
        ),
        col(
            "Duration",
            "string",
            0,
            "Time required to complete the job.",
        ),
        AGE,
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ],
    row: job_row,
};

fn job_row(j: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let mut row = vec![
        name(j),
        json!(job_status(&j["status"])),
        json!(completions(j)),
        json!(duration(&j["status"], now)),
        age(j, now),
    ];
    row.extend(template_cells(
        &j["spec"]["template"]["spec"],
        format_label_selector(&j["spec"]["selector"]),
    ));
    row
}

/// `succeeded/completions`, `succeeded/1 of parallelism` for work queues.
fn completions(j: &Value) -> String {
    let succeeded = int_of(j, "/status/succeeded");
    match j["spec"]["completions"].as_i64() {
        Some(c) => format!("{succeeded}/{c}"),
        None => match j["spec"]["parallelism"].as_i64().unwrap_or(0) {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    }
}

/// From start to completion (or now), empty before the job starts.
fn duration(status: &Value, now: DateTime<Utc>) -> String {
    let start = status["startTime"].as_str().and_then(parse_time);
    let end = status["completionTime"].as_str().and_then(parse_time);
    match (start, end) {
        (Some(s), Some(e)) => human_duration(e - s),
        (Some(s), None) => human_duration(now - s),
        _ => String::new(),
    }
}

/// The first true condition kubectl looks for, else Running.
fn job_status(status: &Value) -> &'static str {
    [
        "Failed",
        "Complete",
        "Suspended",
        "FailureTarget",
        "SuccessCriteriaMet",
    ]
    .into_iter()
    .find(|t| condition_true(status, t))
    .unwrap_or("Running")
}

static CRONJOBS: Printer = Printer {
    columns: &[
        NAME,
        col(
            "Schedule",
            "string",
            0,
            "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron.",
        ),
        col(
            "Timezone",
            "string",
            0,
            "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones.",
        ),
        col(
            "Suspend",
            "boolean",
            0,
            "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions.",
        ),
        col(
            "Active",
            "integer",
            0,
            "A list of pointers to currently running jobs.",
        ),
        col(
            "Last Schedule",
            "string",
            0,
            "Information when was the last time the job was successfully scheduled.",
        ),
        AGE,
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ],
    row: cronjob_row,
};

fn cronjob_row(c: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let last = match c["status"]["lastScheduleTime"].as_str() {
        Some(t) => since(t, now),
        None => "<none>".into(),
    };
    let suspend = c["spec"]["suspend"].as_bool().unwrap_or(false);
    let job = &c["spec"]["jobTemplate"]["spec"];
    let mut row = vec![
        name(c),
        json!(str_of(c, "/spec/schedule")),
        json!(none_if_empty(str_of(c, "/spec/timeZone").to_string())),
        json!(if suspend { "True" } else { "False" }),
        json!(c["status"]["active"].as_array().map(Vec::len).unwrap_or(0)),
        json!(last),
        age(c, now),
    ];
    row.extend(template_cells(
        &job["template"]["spec"],
        format_label_selector(&job["selector"]),
    ));
    row
}
