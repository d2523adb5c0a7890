//! What a snapshot becomes: the report model every view renders (table, live view, JSON), the
//! compact JSON objects for log pipelines, the Prometheus metrics page, the sampled frames with their senders, and pcap files of them.

pub mod compact;
pub mod metrics;
pub mod pcap;
pub mod report;
pub mod samples;
pub mod senders;
pub mod web_config;

/// A JSON object and its line end: one line of the JSON streams (`run`, `status`, `audit`).
pub fn json_line(object: &impl serde::Serialize) -> Vec<u8> {
    let mut line = serde_json::to_vec(object).expect("reports serialize");
    line.push(b'\n');
    line
}
