//! Authorization of a connection before anything is dialed: the route's built-in rules in
//! order, then its external service; periodic re-checks while it lives.

use crate::attributes::Attributes;
use crate::attributes::Decision;
use crate::error::{Error, Kind};
use crate::route::Route;
use authz::{CheckInput, Outcome, Routing};
use config::{FailureMode, RuleAction};
use std::future::Future;
use telemetry::trace::{Span, SpanKind};

/// What authorization knows of the connection.
fn input(route: &Route, a: &Attributes) -> CheckInput {
    let session = a.session.as_deref();
    let mut extensions = Vec::new();
    if let Some(proxy) = a.proxy.as_deref() {
        extensions.push(("proxy_balancer".into(), proxy.balancer.to_string()));
        for (kind, value) in &proxy.tlvs {
            if let Ok(text) = std::str::from_utf8(value) {
                extensions.push((format!("proxy_tlv_0x{kind:02x}"), text.to_string()));
            }
        }
    }
    let include_password = route
        .authorizer
        .as_ref()
        .is_some_and(|z| z.config.include_fix_password);
    if let Some(logon) = a.fix() {
        let fields = [
            ("fix_begin_string", Some(&logon.begin_string)),
            ("fix_sender_comp_id", Some(&logon.sender_comp_id)),
            ("fix_target_comp_id", Some(&logon.target_comp_id)),
            ("fix_sender_sub_id", logon.sender_sub_id.as_ref()),
            ("fix_target_sub_id", logon.target_sub_id.as_ref()),
            ("fix_username", logon.username.as_ref()),
            (
                "fix_password",
                logon.password.as_ref().filter(|_| include_password),
            ),
        ];
        for (name, value) in fields {
            if let Some(value) = value {
                extensions.push((name.into(), value.clone()));
            }
        }
    }
    if let Some(mq) = a.mq() {
        extensions.push(("mq_channel".into(), mq.channel.clone()));
        if let Some(qm) = &mq.queue_manager {
            extensions.push(("mq_queue_manager".into(), qm.clone()));
        }
    }
    if let Some(login) = a.ssh() {
        extensions.push(("ssh_user".into(), login.user.clone()));
        extensions.push(("ssh_auth_method".into(), login.method.into()));
        if let Some(target) = &login.target {
            extensions.push(("ssh_target".into(), target.clone()));
        }
        if let Some(print) = &login.key_fingerprint {
            extensions.push(("ssh_key_fingerprint".into(), print.clone()));
        }
    }
    if let Some(target) = a.tunnel() {
        extensions.push(("tunnel_host".into(), target.host.clone()));
        extensions.push(("tunnel_port".into(), target.port.to_string()));
    }
    CheckInput {
        // With `include_fix_password` the authorizer checks the Logon's password: it
        // authenticates, so neither a rule's allow, nor `failure_mode: allow`, nor the
        // cache may stand in for its answer.
        authenticates: include_password && a.fix().is_some(),
        tunnel: a.tunnel().map(|t| (t.host.clone(), t.port)),
        ssh: a.ssh().map(|l| (l.user.clone(), l.target.clone())),
        fix: a.fix().cloned(),
        mq: a.mq().map(|m| (m.channel.clone(), m.queue_manager.clone())),
        source: Some(a.source),
        destination: Some(a.destination),
        listener: a.listener.to_string(),
        route: route.config.name.clone(),
        sni: a.sni().map(str::to_string),
        peer: session.and_then(|s| s.peer.clone()),
        peer_certificate_pem: session.and_then(|s| s.peer_certificate_pem.clone()),
        extensions,
        traceparent: None,
    }
}

/// Ok: allowed (how, and where the authorizer sends the connection, if it says); Err: how it
/// was refused and the error that closes the connection.
pub(crate) async fn check(route: &Route, attributes: &Attributes) -> Checked {
    check_with(route, attributes, None).await
}

/// [`check`] for an SSH login the gateway cannot verify itself: the authorizer is the one
/// who authenticates (never from the decision cache), told the password when there is one.
pub(crate) async fn authenticate(
    route: &Route,
    attributes: &Attributes,
    password: Option<&str>,
) -> Checked {
    check_with(route, attributes, Some(password)).await
}

/// Ok: allowed (how — `None` when the route has no authorization — and where the authorizer
/// sends the connection, if it says); Err: how it was refused and the error that closes it.
pub(crate) type Checked = Result<(Option<Decision>, Option<Box<Routing>>), (Decision, Error)>;

/// `authenticating`: `Some(password)` when the authorizer authenticates the client. Traced
/// as the `authorize` phase, with the decision.
async fn check_with(
    route: &Route,
    attributes: &Attributes,
    authenticating: Option<Option<&str>>,
) -> Checked {
    let mut phase = attributes.span.child("authorize", SpanKind::Internal);
    let decision = decide(route, attributes, authenticating, phase.as_ref()).await;
    if let Some(phase) = &mut phase {
        match &decision {
            Ok((how, _)) => phase.set("causeway.authz", how.map_or("none", Decision::as_str)),
            Err((how, error)) => {
                phase.set("causeway.authz", how.as_str());
                phase.fail(error.code(), error.to_string());
            }
        }
    }
    decision
}

async fn decide(
    route: &Route,
    attributes: &Attributes,
    authenticating: Option<Option<&str>>,
    phase: Option<&Span>,
) -> Checked {
    let Some(settings) = &route.config.authorization else {
        return Ok((None, None));
    };
    let denied = || Error::internal(Kind::Denied);
    let mut input = input(route, attributes);
    if attributes.ssh().is_some() {
        // Tells an authorizer that authenticates SSH logins which kind of check this is.
        let kind = match authenticating {
            Some(_) => "authenticate",
            None => "authorize",
        };
        input.extensions.push(("ssh_check".into(), kind.into()));
    }
    if let Some(password) = authenticating {
        input.authenticates = true;
        if let Some(password) = password {
            input
                .extensions
                .push(("ssh_password".into(), password.into()));
        }
    }
    // Rules authorize; they cannot vouch for who a client is: when the authorizer
    // authenticates, a rule's allow still needs its yes.
    match authz::rules::evaluate(&settings.rules, &input) {
        Some(RuleAction::Allow) if !input.authenticates => {
            return Ok((Some(Decision::RuleAllow), None));
        }
        Some(RuleAction::Deny) => return Err((Decision::RuleDeny, denied())),
        _ => {}
    }
    let Some(authorizer) = &route.authorizer else {
        return match settings.default {
            RuleAction::Allow => Ok((Some(Decision::DefaultAllow), None)),
            RuleAction::Deny => Err((Decision::DefaultDeny, denied())),
        };
    };
    match call(authorizer, &mut input, phase).await {
        Outcome::Allowed(routing) => Ok((Some(Decision::ExtAuthzAllow), routing.map(Box::new))),
        Outcome::Denied(why) => {
            tracing::info!(id = attributes.id, route = %route.config.name, authorizer = authorizer.name(), reason = %why, "denied by the authorizer");
            Err((Decision::ExtAuthzDeny, denied()))
        }
        failure => {
            let why = match failure {
                Outcome::Failed(e) => e,
                _ => "timed out".to_string(),
            };
            tracing::warn!(id = attributes.id, route = %route.config.name, authorizer = authorizer.name(), failure_mode = ?authorizer.config.failure_mode, "the authorizer did not answer: {why}");
            match authorizer.config.failure_mode {
                // Nobody is let in unauthenticated, whatever the failure mode.
                FailureMode::Allow if !input.authenticates => {
                    Ok((Some(Decision::ExtAuthzFailedAllow), None))
                }
                FailureMode::Allow => Err((
                    Decision::ExtAuthzFailedDeny,
                    Error::internal(Kind::AuthzUnavailable),
                )),
                FailureMode::Deny => Err((
                    Decision::ExtAuthzFailedDeny,
                    Error::internal(Kind::AuthzUnavailable),
                )),
            }
        }
    }
}

/// The authorizer asked, as a CLIENT span whose context goes with the call (gRPC
/// metadata `traceparent`), so the authorizer's own trace joins the connection's.
async fn call(
    authorizer: &authz::ExtAuthz,
    input: &mut CheckInput,
    phase: Option<&Span>,
) -> Outcome {
    const CHECK: &str = "envoy.service.auth.v3.Authorization/Check";
    let mut span = phase.map(|p| p.child(CHECK, SpanKind::Client));
    if let Some(span) = &mut span {
        span.set("rpc.system", "grpc");
        span.set("rpc.service", "envoy.service.auth.v3.Authorization");
        span.set("rpc.method", "Check");
        span.set("causeway.authorizer", authorizer.name().to_string());
        input.traceparent = Some(span.context().traceparent());
    }
    let outcome = authorizer.check(input).await;
    if let Some(span) = &mut span {
        match &outcome {
            Outcome::Allowed(_) => span.set("causeway.authz.outcome", "allowed"),
            Outcome::Denied(_) => span.set("causeway.authz.outcome", "denied"),
            Outcome::Failed(why) => span.fail("authorizer_failed", why.clone()),
            Outcome::TimedOut => {
                span.fail("timeout", "the authorizer did not answer in time".into())
            }
        }
    }
    outcome
}

/// For a route that re-checks live connections: ends with the error that closes the
/// connection once the authorizer denies it. A check that fails (service down) leaves the
/// connection alone: only an explicit deny withdraws a live session.
pub(crate) fn recheck<'a>(
    route: &'a Route,
    attributes: &'a Attributes,
) -> Option<impl Future<Output = Error> + 'a> {
    let every = route.config.authorization.as_ref()?.reauthorize_every?;
    let authorizer = route.authorizer.as_ref()?;
    Some(async move {
        let mut input = input(route, attributes);
        if attributes.ssh().is_some() {
            input
                .extensions
                .push(("ssh_check".into(), "reauthorize".into()));
        }
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tick.tick().await;
            let outcome = authorizer.check(&input).await;
            let said = match &outcome {
                Outcome::Allowed(_) => "allowed",
                Outcome::Denied(_) => "denied",
                Outcome::Failed(_) => "failed",
                Outcome::TimedOut => "timed_out",
            };
            (attributes.span).with(|s| {
                s.event(
                    "reauthorized",
                    vec![("causeway.authz.outcome", said.into())],
                )
            });
            match outcome {
                Outcome::Allowed(_) => {}
                Outcome::Denied(why) => {
                    tracing::info!(id = attributes.id, route = %route.config.name, reason = %why, "authorization withdrawn: closing");
                    return Error::internal(Kind::ReauthorizationDenied);
                }
                Outcome::Failed(why) => {
                    tracing::warn!(id = attributes.id, route = %route.config.name, "re-check failed, the connection stays: {why}");
                }
                Outcome::TimedOut => {
                    tracing::warn!(id = attributes.id, route = %route.config.name, "re-check timed out, the connection stays");
                }
            }
        }
    })
}

/// The authorizers' series: answers by result, cache hits, latency of the checks sent.
pub(crate) fn report(
    authorizers: &[std::sync::Arc<authz::ExtAuthz>],
    out: &mut telemetry::Out<'_>,
) {
    use std::sync::atomic::Ordering::Relaxed;
    for authorizer in authorizers {
        let l = |extra: Option<(&'static str, String)>| {
            let mut labels = vec![("authorizer", authorizer.name().to_string())];
            labels.extend(extra);
            labels
        };
        let s = &authorizer.stats;
        for (result, count) in [
            ("ok", &s.ok),
            ("denied", &s.denied),
            ("error", &s.error),
            ("timeout", &s.timeout),
        ] {
            let labels = l(Some(("result", result.into())));
            out.counter("causeway_authz_checks_total", labels, count.load(Relaxed));
        }
        let hits = s.cache_hits.load(Relaxed);
        out.counter("causeway_authz_cache_hits_total", l(None), hits);
        let name = "causeway_authz_check_duration_seconds";
        out.histogram(name, l(None), &s.latency);
    }
}
