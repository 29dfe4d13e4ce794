//! Serving one request: finding its export, building the invocation (generic `$invoke`
//! and `$echo` included), calling the invoker and writing the response frame; the error
//! answers Java Dubbo gives for services and methods it does not export.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use rdubbo_core::{error::codes, Attachments, Invocation, Invoker, Reply, ReplySink, RpcError};
use rdubbo_hessian::{Encoder, Throwable, Value as HValue};

use crate::codec::{self, status, Header, ResponseBody, HEADER_LEN, HESSIAN2};

use super::{Conn, Export, Shared};

fn response_flags() -> u8 {
    HESSIAN2
}

/// A response with a non-OK status: the body is the message as one Hessian string.
pub(super) fn error_frame(h: Header, st: u8, message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + message.len() + 3);
    let start = codec::begin_frame(&mut out, response_flags(), st, h.id);
    let mut e = Encoder::with_buffer(out);
    e.write_str(message);
    let mut out = e.into_bytes();
    codec::finish_frame(&mut out, start);
    out
}

pub(super) async fn handle(
    shared: Arc<Shared>,
    header: Header,
    body: Vec<u8>,
    conn: Conn,
) -> Option<Vec<u8>> {
    let two_way = header.is_two_way();
    let body = bytes::Bytes::from(body);
    let mut req = match codec::decode_request_body(&body) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "bad request body");
            return two_way
                .then(|| error_frame(header, status::BAD_REQUEST, &format!("bad request: {e}")));
        }
    };
    if shared.draining.load(Ordering::SeqCst) {
        return two_way.then(|| {
            error_frame(
                header,
                status::SERVER_THREADPOOL_EXHAUSTED_ERROR,
                "provider is shutting down; retry on another provider",
            )
        });
    }
    let group = req.attachment("group").filter(|g| !g.is_empty());
    // (In a block: the key's buffer is not kept in the call's future.)
    let export = {
        let key = ServiceKey::new(group, req.service(), req.version.as_deref());
        let key = key.as_str();
        let Some(export) = shared.exports.get(key) else {
            return two_way.then(|| not_exported(&shared, header, &req, key, conn));
        };
        export
    };
    let timeout = req
        .attachment("timeout")
        .and_then(|t| t.parse::<u64>().ok())
        .filter(|t| *t > 0)
        .map(Duration::from_millis)
        .unwrap_or(shared.config.default_timeout);
    let generic = matches!(req.method.as_str(), "$invoke" | "$invokeAsync");
    let (method, args, parameter_types) = if generic {
        match generic_call(&req.args) {
            Ok(call) => call,
            Err(e) => {
                return two_way.then(|| {
                    error_frame(header, status::BAD_REQUEST, &format!("bad $invoke: {e}"))
                })
            }
        }
    } else {
        (
            std::mem::take(&mut req.method),
            std::mem::take(&mut req.args),
            req.parameter_types
                .iter()
                .map(|t| codec::static_descriptor(t))
                .collect(),
        )
    };
    let mut attachments = Attachments::new();
    for (k, v) in &req.attachments {
        if !matches!(
            k.as_str(),
            "path" | "interface" | "version" | "group" | "dubbo" | "timeout"
        ) {
            attachments.insert(k.clone(), v.clone());
        }
    }
    let inv = Invocation {
        interface: export.names.interface.clone(),
        group: export.names.group.clone(),
        version: export.names.version.clone(),
        method: export.names.method(&method),
        args,
        attachments,
        timeout: Some(timeout),
        parameter_types,
        reply_attachments: ReplySink::new(),
    };
    let reply_attachments = inv.reply_attachments.clone();
    // `$echo(Object)`: answered by the framework, as Java's EchoFilter does.
    let mut call = if &*inv.method == "$echo" && inv.args.len() == 1 {
        let echoed = inv
            .args
            .into_values()
            .map(|mut v| v.pop().unwrap_or_default());
        Box::pin(std::future::ready(
            echoed.map(Reply::Value).map_err(RpcError::Codec),
        ))
    } else {
        super::token::serving(conn.peer, conn.local, || export.invoker.invoke(inv))
    };
    // Most calls finish on their first poll: only the others get a timer.
    let first = call.as_mut().poll(&mut Context::from_waker(Waker::noop()));
    let result = match first {
        Poll::Ready(r) => r,
        Poll::Pending => match tokio::time::timeout(timeout, call).await {
            Ok(r) => r,
            Err(_) => Err(RpcError::Timeout(timeout)),
        },
    };
    if !two_way {
        return None;
    }
    if let Err(e) = &result {
        if let Some((st, text)) = status_answer(e) {
            return Some(error_frame(header, st, &text));
        }
    }
    let attachments = codec::supports_response_attachments(&req.dubbo_version);
    let body = match result {
        Ok(reply) if generic => match reply.into_value() {
            Ok(v) => ResponseBody::Value(Reply::Value(codec::generalize(v))),
            Err(e) => ResponseBody::Exception(
                Throwable::new("org.apache.dubbo.rpc.RpcException", e).to_value(),
            ),
        },
        Ok(reply) => ResponseBody::Value(reply),
        Err(RpcError::Timeout(t)) => {
            return Some(error_frame(
                header,
                status::SERVER_TIMEOUT,
                &format!("Server side timeout: the call of {method} took longer than {t:?}"),
            ))
        }
        Err(RpcError::Remote { code, message, .. })
            if code == codes::SERVER_BUSY || code == codes::SHUTTING_DOWN =>
        {
            return Some(error_frame(
                header,
                status::SERVER_THREADPOOL_EXHAUSTED_ERROR,
                &message,
            ))
        }
        // No such method (or no overload with these descriptors). Java finds that out
        // while decoding the request and answers 40 BAD_REQUEST; a generic call finds it
        // in its GenericFilter, whose RpcException is answered 70 SERVICE_ERROR.
        Err(RpcError::Remote { code, message, .. }) if code == codes::METHOD_NOT_FOUND => {
            return Some(if generic {
                let names: Vec<String> = parameter_types_of_generic(&req.args)
                    .iter()
                    .map(|d| rdubbo_core::json::java_name(d))
                    .collect();
                error_frame(
                    header,
                    status::SERVICE_ERROR,
                    &format!(
                        "org.apache.dubbo.rpc.RpcException: {}.{method}({})",
                        export.info.interface,
                        names.join(",")
                    ),
                )
            } else {
                error_frame(
                    header,
                    status::BAD_REQUEST,
                    &format!("{}\n{message}", service_not_found(req.service(), &method)),
                )
            });
        }
        Err(e) => ResponseBody::Exception(exception_of(&e).to_value()),
    };
    let mut out = Vec::with_capacity(HEADER_LEN + 256);
    let start = codec::begin_frame(&mut out, response_flags(), status::OK, header.id);
    let mut e = Encoder::with_buffer(out);
    let pairs: Vec<(String, String)> = reply_attachments
        .get()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if let Err(msg) = codec::encode_response_body(&mut e, &body, attachments.then_some(&pairs[..]))
    {
        tracing::warn!(%msg, "cannot encode the response of {method}");
        return Some(error_frame(
            header,
            status::SERVICE_ERROR,
            &format!("cannot encode the result of {method}: {msg}"),
        ));
    }
    let mut out = e.into_bytes();
    let len = codec::finish_frame(&mut out, start);
    if len > shared.config.payload {
        let msg = format!(
            "Data length too large: {len}, max payload: {} (response of {method})",
            shared.config.payload
        );
        tracing::warn!(%msg, "response over the payload limit");
        return Some(error_frame(header, status::SERVICE_ERROR, &msg));
    }
    Some(out)
}

/// `[group/]interface[:version]`, as `rdubbo_core::url::service_key` writes it, on the
/// stack when it is short (every request looks its export up by it).
struct ServiceKey {
    buf: [u8; 192],
    len: usize,
    long: Option<String>,
}

impl ServiceKey {
    fn new(group: Option<&str>, interface: &str, version: Option<&str>) -> ServiceKey {
        let group = group.filter(|g| !g.is_empty());
        let version = version.filter(|v| !v.is_empty());
        let mut key = ServiceKey {
            buf: [0; 192],
            len: 0,
            long: None,
        };
        let parts = [
            group.unwrap_or(""),
            if group.is_some() { "/" } else { "" },
            interface,
            if version.is_some() { ":" } else { "" },
            version.unwrap_or(""),
        ];
        if parts.iter().map(|p| p.len()).sum::<usize>() > key.buf.len() {
            key.long = Some(rdubbo_core::url::service_key(group, interface, version));
            return key;
        }
        for p in parts {
            key.buf[key.len..key.len + p.len()].copy_from_slice(p.as_bytes());
            key.len += p.len();
        }
        key
    }

    fn as_str(&self) -> &str {
        match &self.long {
            Some(k) => k,
            // Whole strings one after the other: valid UTF-8.
            None => std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default(),
        }
    }
}

/// An error a layer asks to be answered as an error response with a status of its own
/// (`data` with [`STATUS_KEY`](super::token::STATUS_KEY)), as Java answers an exception
/// a provider filter throws: `<exception class>: <message>`.
fn status_answer(e: &RpcError) -> Option<(u8, String)> {
    let RpcError::Remote {
        message,
        data: Some(d),
        ..
    } = e
    else {
        return None;
    };
    let st = u8::try_from(d.get(super::token::STATUS_KEY)?.as_u64()?).ok()?;
    let class = d
        .get("exception")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("org.apache.dubbo.rpc.RpcException");
    Some((st, format!("{class}: {message}")))
}

/// The Java exception a provider-side error travels as.
fn exception_of(e: &RpcError) -> Throwable {
    match e {
        RpcError::Remote {
            code,
            message,
            data,
        } => {
            let class = data
                .as_ref()
                .and_then(|d| d.get("exception").or_else(|| d.get("class")))
                .and_then(serde_json::Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| {
                    if *code == codes::SERVICE_ERROR {
                        "java.lang.RuntimeException".into()
                    } else {
                        "org.apache.dubbo.rpc.RpcException".into()
                    }
                });
            Throwable::new(class, message.clone())
        }
        other => Throwable::new("org.apache.dubbo.rpc.RpcException", other.to_string()),
    }
}

/// The method, arguments and descriptors a generic call (`$invoke(String method,
/// String[] types, Object[] args)`) stands for, its arguments realized from their generic
/// form.
fn generic_call(
    args: &rdubbo_core::Args,
) -> Result<
    (
        String,
        rdubbo_core::Args,
        rdubbo_core::invocation::ParameterTypes,
    ),
    String,
> {
    let mut values = args.to_values()?.into_iter();
    let method = match values.next() {
        Some(HValue::String(m)) => m,
        other => return Err(format!("method name expected, got {other:?}")),
    };
    let types: Vec<std::borrow::Cow<'static, str>> = match values.next() {
        Some(HValue::List(l)) => l
            .items
            .iter()
            .filter_map(HValue::as_str)
            .map(|t| std::borrow::Cow::Owned(rdubbo_core::json::descriptor_from_name(t)))
            .collect(),
        _ => Vec::new(),
    };
    let args = match values.next() {
        Some(HValue::List(l)) => l.items.into_iter().map(codec::realize).collect(),
        _ => Vec::new(),
    };
    Ok((method, rdubbo_core::Args::Values(args), types.into()))
}

/// The first line of Java 2.7's answer (status 40 BAD_REQUEST) to a call whose service
/// path, method or parameter descriptors the provider does not have
/// (`DecodeableRpcInvocation.decode` throws, `HeaderExchangeHandler` answers).
fn service_not_found(path: &str, method: &str) -> String {
    format!(
        "Fail to decode request due to: java.lang.IllegalArgumentException: \
         Service not found:{path}, {method}"
    )
}

/// Java's `serviceKey(port, path, version, group)`: `[group/]path[:version]:port`.
fn java_service_key(info_key: &str, port: u16) -> String {
    format!("{info_key}:{port}")
}

/// How Java 2.7 answers a request for a service it does not export:
/// - an unknown path (no version of it is exported), or a method none of its exported
///   versions has, fails while decoding: 40 BAD_REQUEST, `Service not found:<path>,
///   <method>` (generic `$invoke` and `$echo` calls pass decoding);
/// - a known path with another version or group: 70 SERVICE_ERROR,
///   `RemotingException: Not found exported service: …, may be version or group mismatch`.
fn not_exported(
    shared: &Shared,
    header: Header,
    req: &codec::RequestBody<'_>,
    key: &str,
    conn: Conn,
) -> Vec<u8> {
    let path = req.service();
    let special = matches!(req.method.as_str(), "$invoke" | "$invokeAsync" | "$echo");
    let same_path: Vec<&Export> = shared
        .exports
        .values()
        .filter(|e| e.info.interface == path)
        .collect();
    let methods_known = same_path.iter().any(|e| !e.info.methods.is_empty());
    let has_method = same_path
        .iter()
        .any(|e| e.info.methods.contains(&req.method));
    if !special && (same_path.is_empty() || (methods_known && !has_method)) {
        return error_frame(
            header,
            status::BAD_REQUEST,
            &service_not_found(path, &req.method),
        );
    }
    let port = conn.local.port();
    let mut known: Vec<String> = shared
        .exports
        .keys()
        .map(|k| java_service_key(k, port))
        .collect();
    known.sort();
    let types: Vec<String> = req
        .parameter_types
        .iter()
        .map(|d| java_class_text(d))
        .collect();
    error_frame(
        header,
        status::SERVICE_ERROR,
        &format!(
            "org.apache.dubbo.remoting.RemotingException: Not found exported service: {} in [{}], \
             may be version or group mismatch , channel: consumer: /{} --> provider: /{}, \
             message:RpcInvocation [methodName={}, parameterTypes=[{}]]",
            java_service_key(key, port),
            known.join(", "),
            conn.peer,
            conn.local,
            req.method,
            types.join(", ")
        ),
    )
}

/// A parameter type as Java's `Class.toString` prints it (`long`, `class
/// java.lang.String`, `class [J`; an interface type reads `class` here too).
fn java_class_text(descriptor: &str) -> String {
    match descriptor {
        "Z" | "B" | "S" | "I" | "J" | "F" | "D" | "C" | "V" => {
            rdubbo_core::json::java_name(descriptor)
        }
        d => format!("class {}", rdubbo_core::json::java_name(d)),
    }
}

/// The descriptors a generic call names (its second argument), for error texts.
fn parameter_types_of_generic(args: &rdubbo_core::Args) -> Vec<String> {
    match args.to_values() {
        Ok(values) => match values.into_iter().nth(1) {
            Some(HValue::List(l)) => l
                .items
                .iter()
                .filter_map(HValue::as_str)
                .map(rdubbo_core::json::descriptor_from_name)
                .collect(),
            _ => Vec::new(),
        },
        Err(_) => Vec::new(),
    }
}
