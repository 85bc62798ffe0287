//! The `tracing` section, and the standard `OTEL_*` environment variables that stand in for
//! it when the file has none (as OpenTelemetry SDKs read them).

use crate::problems::Problems;
use crate::{model, raw};
use std::time::Duration;

pub const DEFAULT_SPAN_MAX_DURATION: Duration = Duration::from_secs(3600);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_BATCH: model::Batch = model::Batch {
    max_queue_size: 2048,
    max_export_batch_size: 512,
    schedule_delay: Duration::from_secs(5),
};

pub(super) fn tracing(problems: &mut Problems, raw: raw::Tracing) -> model::Tracing {
    let protocol = match raw.protocol.as_ref().map(|p| p.value.as_str()) {
        None | Some("grpc") => model::OtlpProtocol::Grpc,
        Some("http/protobuf") => model::OtlpProtocol::HttpProtobuf,
        Some(other) => {
            let at = raw.protocol.as_ref().unwrap().referenced;
            problems.add(
                at,
                format!("tracing.protocol `{other}` must be grpc or http/protobuf"),
            );
            model::OtlpProtocol::Grpc
        }
    };
    let endpoint = endpoint(&raw.endpoint.value, protocol, false).unwrap_or_else(|e| {
        problems.add(raw.endpoint.referenced, format!("tracing.endpoint: {e}"));
        String::new()
    });
    let tls = raw.tls.map(|t| model::CollectorTls {
        ca: t.ca.map(Into::into),
        certificate: t.certificate.map(Into::into),
        key: t.key.map(Into::into),
    });
    if let Some(t) = &tls {
        if t.certificate.is_some() != t.key.is_some() {
            let message = "tracing.tls needs both certificate and key, or neither";
            problems.add(raw.endpoint.referenced, message);
        }
        if endpoint.starts_with("http://") {
            let message = "tracing.tls is set but the endpoint is http://: use https://";
            problems.add(raw.endpoint.referenced, message);
        }
    }
    let sampler = raw.sampler.map_or(DEFAULT_SAMPLER, |s| model::Sampler {
        ratio: s.ratio.map_or(1.0, |r| ratio(problems, &r)),
        parent_based: s.parent_based.unwrap_or(true),
    });
    let batch = raw.batch.map_or(DEFAULT_BATCH, |b| model::Batch {
        max_queue_size: b.max_queue_size.map_or(DEFAULT_BATCH.max_queue_size, |m| {
            problems.at_least(&m, 1, "tracing.batch.max_queue_size")
        }),
        max_export_batch_size: b.max_export_batch_size.map_or(512, |m| {
            problems.at_least(&m, 1, "tracing.batch.max_export_batch_size")
        }),
        schedule_delay: b.schedule_delay.map_or(DEFAULT_BATCH.schedule_delay, |d| {
            problems.positive(&d, "tracing.batch.schedule_delay")
        }),
    });
    model::Tracing {
        exporter: model::OtlpExporter {
            endpoint,
            protocol,
            headers: raw.headers.into_iter().collect(),
            tls,
            timeout: raw.timeout.map_or(DEFAULT_TIMEOUT, |t| {
                problems.positive(&t, "tracing.timeout")
            }),
        },
        service_name: raw.service_name.unwrap_or_else(|| "causeway".into()),
        resource: raw.resource.into_iter().collect(),
        sampler,
        span_max_duration: raw
            .span_max_duration
            .map_or(DEFAULT_SPAN_MAX_DURATION, |d| {
                problems.positive(&d, "tracing.span_max_duration")
            }),
        batch,
    }
}

const DEFAULT_SAMPLER: model::Sampler = model::Sampler {
    ratio: 1.0,
    parent_based: true,
};

fn ratio(problems: &mut Problems, r: &serde_saphyr::Spanned<f64>) -> f64 {
    if !(0.0..=1.0).contains(&r.value) {
        problems.add(
            r.referenced,
            "tracing.sampler.ratio must be between 0 and 1",
        );
        return 1.0;
    }
    r.value
}

/// The URL spans go to. gRPC: `scheme://host:port`. HTTP: the URL POSTed to; a base
/// without a path gets `/v1/traces` (`exact`: the `…_TRACES_ENDPOINT` variable, used as is).
fn endpoint(url: &str, protocol: model::OtlpProtocol, exact: bool) -> Result<String, String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("`{url}` must start with http:// or https://"))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let port_ok = authority
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !port_ok {
        return Err(format!("`{url}` must name a host and a port"));
    }
    Ok(match protocol {
        model::OtlpProtocol::Grpc => url.trim_end_matches('/').to_string(),
        model::OtlpProtocol::HttpProtobuf if exact => url.to_string(),
        model::OtlpProtocol::HttpProtobuf => {
            let base = format!(
                "{}{}",
                &url[..url.len() - path.len()],
                path.trim_end_matches('/')
            );
            format!("{base}/v1/traces")
        }
    })
}

/// Tracing as the OpenTelemetry environment variables ask, for a file without a `tracing`
/// section: on when an OTLP endpoint is named (or `OTEL_TRACES_EXPORTER=otlp`), off when
/// `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`. An error names the variable.
pub fn tracing_from_env(
    var: impl Fn(&str) -> Option<String>,
) -> Result<Option<model::Tracing>, String> {
    // The traces-specific variable wins over the general one.
    let get = |name: &str| {
        var(&format!("OTEL_EXPORTER_OTLP_TRACES_{name}"))
            .or_else(|| var(&format!("OTEL_EXPORTER_OTLP_{name}")))
            .filter(|v| !v.trim().is_empty())
    };
    let exporter = var("OTEL_TRACES_EXPORTER");
    let disabled = var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let named = var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some()
        || var("OTEL_EXPORTER_OTLP_ENDPOINT").is_some();
    match exporter.as_deref().map(str::trim) {
        _ if disabled => return Ok(None),
        Some("none") => return Ok(None),
        Some("otlp") => {}
        Some(other) => return Err(format!("OTEL_TRACES_EXPORTER `{other}`: only otlp or none")),
        None if !named => return Ok(None),
        None => {}
    }
    let protocol = match get("PROTOCOL").as_deref().map(str::trim) {
        None | Some("http/protobuf") => model::OtlpProtocol::HttpProtobuf,
        Some("grpc") => model::OtlpProtocol::Grpc,
        Some(other) => {
            return Err(format!(
                "OTEL_EXPORTER_OTLP_PROTOCOL `{other}`: grpc or http/protobuf"
            ));
        }
    };
    let endpoint = match (
        var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
        var("OTEL_EXPORTER_OTLP_ENDPOINT"),
    ) {
        (Some(exact), _) => endpoint(exact.trim(), protocol, true),
        (None, Some(base)) => endpoint(base.trim(), protocol, false),
        (None, None) => endpoint(default_endpoint(protocol), protocol, false),
    }
    .map_err(|e| format!("OTEL_EXPORTER_OTLP_ENDPOINT: {e}"))?;
    let millis = |name: &str, value: Option<String>, default: Duration| match value {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse::<u64>()
            .map(Duration::from_millis)
            .map_err(|_| format!("{name} `{v}` must be milliseconds")),
    };
    let count = |name: &str, default: usize| match var(name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{name} `{v}` must be a positive number")),
    };
    let tls = match (
        get("CERTIFICATE"),
        get("CLIENT_CERTIFICATE"),
        get("CLIENT_KEY"),
    ) {
        (None, None, None) => None,
        (ca, certificate, key) => Some(model::CollectorTls {
            ca: ca.map(Into::into),
            certificate: certificate.map(Into::into),
            key: key.map(Into::into),
        }),
    };
    let mut resource = pairs(&var("OTEL_RESOURCE_ATTRIBUTES").unwrap_or_default());
    let service_name = var("OTEL_SERVICE_NAME")
        .or_else(|| take(&mut resource, "service.name"))
        .unwrap_or_else(|| "causeway".into());
    Ok(Some(model::Tracing {
        exporter: model::OtlpExporter {
            endpoint,
            protocol,
            headers: pairs(&get("HEADERS").unwrap_or_default()),
            tls,
            timeout: millis(
                "OTEL_EXPORTER_OTLP_TIMEOUT",
                get("TIMEOUT"),
                DEFAULT_TIMEOUT,
            )?,
        },
        service_name,
        resource,
        sampler: sampler(var("OTEL_TRACES_SAMPLER"), var("OTEL_TRACES_SAMPLER_ARG"))?,
        span_max_duration: DEFAULT_SPAN_MAX_DURATION,
        batch: model::Batch {
            max_queue_size: count("OTEL_BSP_MAX_QUEUE_SIZE", DEFAULT_BATCH.max_queue_size)?,
            max_export_batch_size: count(
                "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
                DEFAULT_BATCH.max_export_batch_size,
            )?,
            schedule_delay: millis(
                "OTEL_BSP_SCHEDULE_DELAY",
                var("OTEL_BSP_SCHEDULE_DELAY"),
                DEFAULT_BATCH.schedule_delay,
            )?,
        },
    }))
}

fn default_endpoint(protocol: model::OtlpProtocol) -> &'static str {
    match protocol {
        model::OtlpProtocol::Grpc => "http://localhost:4317",
        model::OtlpProtocol::HttpProtobuf => "http://localhost:4318",
    }
}

/// `OTEL_TRACES_SAMPLER` and its argument; the default is `parentbased_always_on`.
fn sampler(name: Option<String>, arg: Option<String>) -> Result<model::Sampler, String> {
    let ratio = || match &arg {
        None => Ok(1.0),
        Some(a) => a
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|r| (0.0..=1.0).contains(r))
            .ok_or_else(|| format!("OTEL_TRACES_SAMPLER_ARG `{a}` must be between 0 and 1")),
    };
    let (ratio, parent_based) = match name.as_deref().map(str::trim) {
        None | Some("parentbased_always_on") => (1.0, true),
        Some("always_on") => (1.0, false),
        Some("always_off") => (0.0, false),
        Some("parentbased_always_off") => (0.0, true),
        Some("traceidratio") => (ratio()?, false),
        Some("parentbased_traceidratio") => (ratio()?, true),
        Some(other) => return Err(format!("OTEL_TRACES_SAMPLER `{other}` is not supported")),
    };
    Ok(model::Sampler {
        ratio,
        parent_based,
    })
}

/// `key=value,key2=value2`, values percent-decoded (W3C Baggage octets, as the spec says).
fn pairs(text: &str) -> Vec<(String, String)> {
    text.split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), percent_decode(v.trim())))
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

fn take(pairs: &mut Vec<(String, String)>, key: &str) -> Option<String> {
    let at = pairs.iter().position(|(k, _)| k == key)?;
    Some(pairs.remove(at).1)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Result<Option<model::Tracing>, String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        tracing_from_env(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    #[test]
    fn nothing_set_means_no_tracing() {
        assert_eq!(env(&[]), Ok(None));
        assert_eq!(env(&[("OTEL_SERVICE_NAME", "x")]), Ok(None));
    }

    #[test]
    fn an_endpoint_turns_it_on_as_the_sdks_do() {
        let t = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.name=edge,deployment.environment=prod%20eu",
            ),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=s3cret"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(t.exporter.endpoint, "http://collector:4318/v1/traces");
        assert_eq!(t.exporter.protocol, model::OtlpProtocol::HttpProtobuf);
        assert_eq!(t.service_name, "edge");
        assert_eq!(
            t.resource,
            [("deployment.environment".into(), "prod eu".into())]
        );
        assert_eq!(
            t.sampler,
            model::Sampler {
                ratio: 0.25,
                parent_based: true
            }
        );
        assert_eq!(t.exporter.headers, [("api-key".into(), "s3cret".into())]);
    }

    #[test]
    fn the_traces_endpoint_is_used_as_is_and_wins() {
        let t = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://b:4317"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
        ]);
        let t = t.unwrap().unwrap();
        assert_eq!(
            (t.exporter.endpoint.as_str(), t.exporter.protocol),
            ("http://b:4317", model::OtlpProtocol::Grpc)
        );
    }

    #[test]
    fn disabled_wins_and_bad_values_are_named() {
        let on = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4318");
        assert_eq!(env(&[on, ("OTEL_SDK_DISABLED", "true")]), Ok(None));
        assert_eq!(env(&[on, ("OTEL_TRACES_EXPORTER", "none")]), Ok(None));
        let bad = env(&[
            on,
            ("OTEL_TRACES_SAMPLER_ARG", "2"),
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
        ]);
        assert!(bad.unwrap_err().contains("OTEL_TRACES_SAMPLER_ARG"));
        let bad = env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")]);
        assert!(bad.unwrap_err().contains("http://"));
    }
}
