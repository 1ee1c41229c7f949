//! Manifests of exports delivered in parts: the AWS Cost and Usage Report's
//! `<report>-Manifest.json` (`reportKeys`), AWS Data Exports' manifest (`dataFiles`, as `s3://`
//! URIs) and Azure Cost Management's partitioned export `manifest.json` (`blobs[].blobName`,
//! with `exportConfig.type` saying actual or amortized cost). Every part a manifest lists is
//! one file of the same import.

use serde_json::Value;

/// What a manifest says: its parts as URLs, and which cost the export holds.
#[derive(Debug, PartialEq, Eq)]
pub struct Manifest {
    pub parts: Vec<String>,
    /// `actual` or `amortized`, when the manifest says.
    pub dataset: Option<&'static str>,
}

/// Reads a manifest fetched from `manifest_url`. Parts are resolved against it: a part is a key
/// within the same bucket or container, so it replaces the manifest's path from the segment
/// where the key's first segment appears (keeping the bucket or container before it), and the
/// manifest URL's query string (an Azure SAS token for the container) is kept.
pub fn parse(manifest_url: &str, body: &[u8]) -> Result<Manifest, String> {
    let manifest: Value =
        serde_json::from_slice(body).map_err(|err| format!("the manifest is not JSON: {err}"))?;
    let names: Vec<String> = if let Some(keys) = manifest.get("reportKeys") {
        strings(keys, "reportKeys")?
    } else if let Some(files) = manifest.get("dataFiles") {
        strings(files, "dataFiles")?
    } else if let Some(blobs) = manifest.get("blobs") {
        blobs
            .as_array()
            .ok_or("blobs is not a list")?
            .iter()
            .map(|b| {
                b.get("blobName")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .ok_or_else(|| "a blob has no blobName".to_string())
            })
            .collect::<Result<_, _>>()?
    } else {
        return Err(
            "not a manifest of a known export (an AWS report's reportKeys or dataFiles, or an \
             Azure export's blobs)"
                .into(),
        );
    };
    if names.is_empty() {
        return Err("the manifest lists no files".into());
    }
    let dataset = match manifest
        .pointer("/exportConfig/type")
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("actualcost" | "usage") => Some("actual"),
        Some("amortizedcost") => Some("amortized"),
        _ => None,
    };
    let parts = names
        .iter()
        .map(|name| resolve(manifest_url, name))
        .collect::<Result<_, _>>()?;
    Ok(Manifest { parts, dataset })
}

fn strings(list: &Value, field: &str) -> Result<Vec<String>, String> {
    list.as_array()
        .ok_or_else(|| format!("{field} is not a list"))?
        .iter()
        .map(|v| {
            v.as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("{field} holds a value that is not text"))
        })
        .collect()
}

/// The URL of a part named in a manifest fetched from `manifest_url`.
pub fn resolve(manifest_url: &str, name: &str) -> Result<String, String> {
    if name.starts_with("http://") || name.starts_with("https://") {
        return Ok(name.to_string());
    }
    let mut url = reqwest::Url::parse(manifest_url).map_err(|err| err.to_string())?;
    // `s3://bucket/key` (Data Exports): the key, within the manifest's bucket.
    let key = match name.strip_prefix("s3://") {
        Some(rest) => rest.split_once('/').map(|(_, key)| key).unwrap_or(""),
        None => name,
    }
    .trim_start_matches('/');
    let first = key.split('/').next().unwrap_or_default();
    let segments: Vec<&str> = url.path_segments().map(|s| s.collect()).unwrap_or_default();
    let directory = &segments[..segments.len().saturating_sub(1)];
    let base: Vec<&str> = match directory
        .iter()
        .position(|s| *s == first && key.contains('/'))
    {
        // The key starts where its first segment appears in the manifest's path.
        Some(at) => directory[..at].to_vec(),
        // A bare file name lies beside the manifest.
        None if !key.contains('/') => directory.to_vec(),
        // A key the path does not share: from the bucket's root (virtual-hosted) or after the
        // bucket or container (path-style, where the host does not name it).
        None => directory
            .iter()
            .take(usize::from(!host_names_bucket(&url)))
            .copied()
            .collect(),
    };
    let mut path = String::new();
    for segment in base.iter().chain([&key]) {
        path.push('/');
        path.push_str(segment);
    }
    url.set_path(&path);
    Ok(url.to_string())
}

/// Whether the host names the bucket (`bucket.s3.amazonaws.com`), so the path is the key alone;
/// Azure's `account.blob.core.windows.net/container/...` and path-style S3 put it in the path.
fn host_names_bucket(url: &reqwest::Url) -> bool {
    let host = url.host_str().unwrap_or_default();
    host.contains(".s3.") || host.contains(".s3-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_cur_manifests_list_report_keys_in_the_bucket() {
        let url = "https://bucket.s3.us-east-1.amazonaws.com/cur/daily/20240101-20240201/daily-Manifest.json?X-Amz-Signature=abc";
        let body = br#"{"assemblyId":"a1","bucket":"bucket","billingPeriod":{"start":"20240101T000000.000Z","end":"20240201T000000.000Z"},
            "reportKeys":["cur/daily/20240101-20240201/a1/daily-00001.csv.gz","cur/daily/20240101-20240201/a1/daily-00002.csv.gz"]}"#;
        let manifest = parse(url, body).unwrap();
        assert_eq!(
            manifest.parts,
            vec![
                "https://bucket.s3.us-east-1.amazonaws.com/cur/daily/20240101-20240201/a1/daily-00001.csv.gz?X-Amz-Signature=abc",
                "https://bucket.s3.us-east-1.amazonaws.com/cur/daily/20240101-20240201/a1/daily-00002.csv.gz?X-Amz-Signature=abc",
            ]
        );
        assert_eq!(manifest.dataset, None);
        // Path-style: the bucket stays in the path.
        assert_eq!(
            resolve(
                "http://127.0.0.1:9000/bucket/cur/daily/m.json",
                "cur/daily/a1/part-1.csv"
            )
            .unwrap(),
            "http://127.0.0.1:9000/bucket/cur/daily/a1/part-1.csv"
        );
    }

    #[test]
    fn data_exports_manifests_list_s3_uris() {
        let url = "https://b.s3.amazonaws.com/exports/cur2/metadata/BILLING_PERIOD=2024-01/cur2-Manifest.json";
        let body = br#"{"executionId":"e","bucket":"b","dataFiles":["s3://b/exports/cur2/data/BILLING_PERIOD=2024-01/cur2-00001.csv.gz"]}"#;
        assert_eq!(
            parse(url, body).unwrap().parts,
            vec![
                "https://b.s3.amazonaws.com/exports/cur2/data/BILLING_PERIOD=2024-01/cur2-00001.csv.gz"
            ]
        );
    }

    #[test]
    fn azure_manifests_list_blobs_in_the_container_and_say_the_dataset() {
        let url = "https://acct.blob.core.windows.net/exports/costs/monthly-amortized/20240101-20240131/run-7/manifest.json?sv=2022&sig=xyz";
        let body = br#"{"manifestVersion":"2024-04-01","byteCount":100,"blobCount":2,"dataRowCount":20,
            "exportConfig":{"exportName":"monthly-amortized","type":"AmortizedCost","timeFrame":"MonthToDate"},
            "blobs":[{"blobName":"costs/monthly-amortized/20240101-20240131/run-7/part_0_0001.csv.gz","byteCount":50,"dataRowCount":10},
                     {"blobName":"costs/monthly-amortized/20240101-20240131/run-7/part_1_0001.csv.gz","byteCount":50,"dataRowCount":10}]}"#;
        let manifest = parse(url, body).unwrap();
        assert_eq!(manifest.dataset, Some("amortized"));
        assert_eq!(
            manifest.parts[1],
            "https://acct.blob.core.windows.net/exports/costs/monthly-amortized/20240101-20240131/run-7/part_1_0001.csv.gz?sv=2022&sig=xyz"
        );
        // A bare name lies beside the manifest.
        assert_eq!(
            resolve(url, "part_9.csv").unwrap(),
            "https://acct.blob.core.windows.net/exports/costs/monthly-amortized/20240101-20240131/run-7/part_9.csv?sv=2022&sig=xyz"
        );
    }

    #[test]
    fn what_is_not_a_manifest_is_refused() {
        assert!(parse("http://x/m.json", b"not json").is_err());
        assert!(parse("http://x/m.json", br#"{"hello": 1}"#).is_err());
        assert!(parse("http://x/m.json", br#"{"reportKeys": []}"#).is_err());
        assert!(parse("http://x/m.json", br#"{"blobs": [{"size": 1}]}"#).is_err());
    }
}
