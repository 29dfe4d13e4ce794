//! Answers: a response frame as the call's result, and a Java exception as an error (and
//! back, with [`java_exception`]).

use rdubbo_core::{error::codes, Reply, RpcError, RpcResult};
use rdubbo_hessian::{Throwable, Value as HValue};

use crate::codec::{self, status, Header, ResponseBody};

/// Turns a response frame into the call's result.
pub(super) fn decode_reply(
    addr: &str,
    (header, body): (Header, Vec<u8>),
    sink: &rdubbo_core::ReplySink,
) -> RpcResult<Reply> {
    if header.status != status::OK {
        let message = rdubbo_hessian::decode_value(&body)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        let code = match header.status {
            status::CLIENT_TIMEOUT | status::SERVER_TIMEOUT => codes::SERVER_TIMEOUT,
            status::SERVER_THREADPOOL_EXHAUSTED_ERROR => {
                if message.contains("shutting down") {
                    codes::SHUTTING_DOWN
                } else {
                    codes::SERVER_BUSY
                }
            }
            status::SERVICE_NOT_FOUND => codes::METHOD_NOT_FOUND,
            // How Java providers (and rdubbo's server) say "no such service, version or
            // method": 2.7 answers 40 `… Service not found:<path>, <method>` or 70
            // `… Not found exported service: …`; 3.3 answers 40 `Fail to decode request
            // due to: RpcInvocation [methodName=…`.
            status::BAD_REQUEST | status::SERVICE_ERROR if is_not_found(&message) => {
                codes::METHOD_NOT_FOUND
            }
            status::BAD_REQUEST | status::SERIALIZATION_ERROR => codes::INVALID_REQUEST,
            status::SERVICE_ERROR => codes::SERVICE_ERROR,
            status::CHANNEL_INACTIVE => {
                return Err(RpcError::Transport {
                    addr: addr.to_string(),
                    reason: message,
                })
            }
            _ => codes::INTERNAL_ERROR,
        };
        return Err(RpcError::Remote {
            code,
            message,
            data: Some(serde_json::json!({"status": header.status})),
        });
    }
    let (result, attachments) = codec::decode_response(bytes::Bytes::from(body), sink.is_set())
        .map_err(|e| RpcError::Codec(format!("bad response from {addr}: {e}")))?;
    match result {
        ResponseBody::Value(v) => {
            if sink.is_set() {
                for (k, v) in attachments {
                    sink.insert(k, v);
                }
            }
            Ok(v)
        }
        ResponseBody::Exception(x) => Err(exception_error(&x)),
    }
}

/// Whether an error answer's text is Java Dubbo's "service or method not found".
fn is_not_found(message: &str) -> bool {
    let first = message.lines().next().unwrap_or("");
    first.contains("java.lang.IllegalArgumentException: Service not found:")
        || first.contains("Not found exported service: ")
        || first.starts_with("Fail to decode request due to: RpcInvocation [methodName=")
}

/// The error a Java exception object becomes: a service error whose `data` names the
/// exception class and carries its stack (see [`java_exception`]).
fn exception_error(x: &HValue) -> RpcError {
    match Throwable::from_value(x) {
        Some(t) => RpcError::Remote {
            code: codes::SERVICE_ERROR,
            message: t.message.clone().unwrap_or_else(|| t.class.clone()),
            data: Some(serde_json::json!({
                "exception": t.class,
                "stackTrace": t.stack_trace.iter().map(|f| format!(
                    "{}.{}({}:{})",
                    f.declaring_class,
                    f.method_name,
                    f.file_name.as_deref().unwrap_or("Unknown Source"),
                    f.line_number
                )).collect::<Vec<_>>(),
            })),
        },
        None => RpcError::Remote {
            code: codes::SERVICE_ERROR,
            message: format!(
                "provider answered with an exception: {}",
                rdubbo_core::json::from_value(x)
            ),
            data: None,
        },
    }
}

/// The Java exception class and stack of an error a Dubbo provider raised, if it was one.
pub fn java_exception(e: &RpcError) -> Option<(String, Vec<String>)> {
    let RpcError::Remote { data: Some(d), .. } = e else {
        return None;
    };
    let class = d.get("exception")?.as_str()?.to_string();
    let stack = d
        .get("stackTrace")
        .and_then(serde_json::Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    Some((class, stack))
}
