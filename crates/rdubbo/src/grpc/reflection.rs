//! `grpc.reflection.v1.ServerReflection` (and `v1alpha`, the same messages): the
//! services a server exports and the protobuf files that define them, from the
//! descriptor sets registered with [`crate::idl::register_file_descriptor_set`].
//!
//! As grpc-go does, a reflection stream remembers the files it has sent: an answer
//! carries the file asked for (always, first: clients read it there) and only those of its
//! dependencies, direct or not, that this stream has not sent yet. A client describing
//! many symbols on one stream thus receives each shared import (`google/protobuf/…`) once.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use prost::Message;
use prost_types::{DescriptorProto, FileDescriptorProto, FileDescriptorSet};
use rdubbo_protocol_triple::codec::grpc;

use super::proto::reflection::v1::{
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    ErrorResponse, ExtensionNumberResponse, FileDescriptorResponse, ListServiceResponse,
    ServerReflection, ServerReflectionRequest, ServerReflectionResponse, ServiceResponse,
};
use crate::idl::{self, Streaming};
use crate::RpcResult;

/// The reflection service of one server: lists `services`, describes every file of the
/// registered descriptor sets.
#[derive(Debug, Clone)]
pub struct ReflectionService {
    services: Arc<[String]>,
}

impl ReflectionService {
    /// Lists `services` (sorted, without duplicates).
    pub fn new(services: Vec<String>) -> Self {
        let set: BTreeSet<String> = services.into_iter().collect();
        ReflectionService {
            services: set.into_iter().collect(),
        }
    }

    /// The answer to one question, on its own (a file comes with all its dependencies).
    pub fn answer(&self, request: ServerReflectionRequest) -> ServerReflectionResponse {
        self.answer_on_stream(request, &mut HashSet::new())
    }

    /// The answer to one question of a stream that has already sent the files in `sent`
    /// (which it adds to): a file asked for is always in the answer, its dependencies only
    /// when not sent yet.
    fn answer_on_stream(
        &self,
        request: ServerReflectionRequest,
        sent: &mut HashSet<String>,
    ) -> ServerReflectionResponse {
        let pool = Pool::current();
        let response = match &request.message_request {
            None => error(grpc::INVALID_ARGUMENT, "empty request"),
            Some(MessageRequest::ListServices(_)) => {
                MessageResponse::ListServicesResponse(ListServiceResponse {
                    service: self
                        .services
                        .iter()
                        .map(|name| ServiceResponse { name: name.clone() })
                        .collect(),
                })
            }
            Some(MessageRequest::FileByFilename(name)) => match pool.files.get(name.as_str()) {
                Some(_) => pool.with_dependencies(name, sent),
                None => error(grpc::NOT_FOUND, &format!("file not found: {name}")),
            },
            Some(MessageRequest::FileContainingSymbol(symbol)) => {
                match pool.symbols.get(symbol.trim_start_matches('.')) {
                    Some(file) => pool.with_dependencies(file, sent),
                    None => error(grpc::NOT_FOUND, &format!("symbol not found: {symbol}")),
                }
            }
            Some(MessageRequest::FileContainingExtension(ext)) => {
                let key = (
                    ext.containing_type.trim_start_matches('.').to_owned(),
                    ext.extension_number,
                );
                match pool.extensions.get(&key) {
                    Some(file) => pool.with_dependencies(file, sent),
                    None => error(
                        grpc::NOT_FOUND,
                        &format!(
                            "extension {} of {} not found",
                            ext.extension_number, ext.containing_type
                        ),
                    ),
                }
            }
            Some(MessageRequest::AllExtensionNumbersOfType(ty)) => {
                let ty = ty.trim_start_matches('.');
                if pool.symbols.contains_key(ty) {
                    let mut numbers: Vec<i32> = pool
                        .extensions
                        .keys()
                        .filter(|(t, _)| t == ty)
                        .map(|(_, n)| *n)
                        .collect();
                    numbers.sort_unstable();
                    MessageResponse::AllExtensionNumbersResponse(ExtensionNumberResponse {
                        base_type_name: ty.to_owned(),
                        extension_number: numbers,
                    })
                } else {
                    error(grpc::NOT_FOUND, &format!("type not found: {ty}"))
                }
            }
        };
        ServerReflectionResponse {
            valid_host: request.host.clone(),
            original_request: Some(request),
            message_response: Some(response),
        }
    }
}

fn error(code: u32, message: &str) -> MessageResponse {
    MessageResponse::ErrorResponse(ErrorResponse {
        error_code: code as i32,
        error_message: message.to_owned(),
    })
}

impl ServerReflection for ReflectionService {
    async fn server_reflection_info(
        &self,
        requests: Streaming<ServerReflectionRequest>,
    ) -> RpcResult<Streaming<ServerReflectionResponse>> {
        let this = self.clone();
        let (tx, out) = Streaming::channel(4);
        tokio::spawn(async move {
            let mut requests = requests;
            // The files this stream has sent: not sent again as dependencies.
            let mut sent = HashSet::new();
            loop {
                tokio::select! {
                    next = requests.next() => match next {
                        None => {
                            tx.finish();
                            return;
                        }
                        Some(Err(e)) => {
                            tx.fail(e).await;
                            return;
                        }
                        Some(Ok(request)) => {
                            let answer = this.answer_on_stream(request, &mut sent);
                            if tx.send(&answer).await.is_err() {
                                return;
                            }
                        }
                    },
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(out)
    }
}

/// The files of the registered descriptor sets, indexed.
#[derive(Default)]
struct Pool {
    /// By file name: the file and its encoding.
    files: HashMap<String, (FileDescriptorProto, Vec<u8>)>,
    /// Fully qualified symbol → file name.
    symbols: HashMap<String, String>,
    /// (extended type, field number) → file name.
    extensions: HashMap<(String, i32), String>,
}

static CACHE: Mutex<Option<(usize, Arc<Pool>)>> = Mutex::new(None);

impl Pool {
    /// The pool of the sets registered now (rebuilt only when more were registered).
    fn current() -> Arc<Pool> {
        let sets = idl::file_descriptor_sets();
        let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((n, pool)) = cache.as_ref() {
            if *n == sets.len() {
                return pool.clone();
            }
        }
        let pool = Arc::new(Pool::build(&sets));
        *cache = Some((sets.len(), pool.clone()));
        pool
    }

    fn build(sets: &[&[u8]]) -> Pool {
        let mut pool = Pool::default();
        for set in sets {
            let Ok(set) = FileDescriptorSet::decode(*set) else {
                tracing::warn!("a registered file descriptor set does not decode; skipped");
                continue;
            };
            for file in set.file {
                let name = file.name().to_owned();
                if pool.files.contains_key(&name) {
                    continue;
                }
                pool.index(&file);
                let encoded = file.encode_to_vec();
                pool.files.insert(name, (file, encoded));
            }
        }
        pool
    }

    fn index(&mut self, file: &FileDescriptorProto) {
        let name = file.name().to_owned();
        let prefix = match file.package() {
            "" => String::new(),
            p => format!("{p}."),
        };
        for m in &file.message_type {
            self.index_message(&name, &prefix, m);
        }
        for e in &file.enum_type {
            self.symbols
                .insert(format!("{prefix}{}", e.name()), name.clone());
        }
        for s in &file.service {
            let service = format!("{prefix}{}", s.name());
            for m in &s.method {
                self.symbols
                    .insert(format!("{service}.{}", m.name()), name.clone());
            }
            self.symbols.insert(service, name.clone());
        }
        for x in &file.extension {
            self.extension(&name, &prefix, x);
        }
    }

    fn index_message(&mut self, file: &str, prefix: &str, m: &DescriptorProto) {
        let full = format!("{prefix}{}", m.name());
        let inner = format!("{full}.");
        for nested in &m.nested_type {
            self.index_message(file, &inner, nested);
        }
        for e in &m.enum_type {
            self.symbols
                .insert(format!("{inner}{}", e.name()), file.to_owned());
        }
        for x in &m.extension {
            self.extension(file, &inner, x);
        }
        self.symbols.insert(full, file.to_owned());
    }

    fn extension(&mut self, file: &str, prefix: &str, x: &prost_types::FieldDescriptorProto) {
        self.symbols
            .insert(format!("{prefix}{}", x.name()), file.to_owned());
        let extendee = x.extendee().trim_start_matches('.').to_owned();
        self.extensions
            .insert((extendee, x.number()), file.to_owned());
    }

    /// `name` (always, first) and every file it imports, directly or not, that is not in
    /// `sent` (each once); adds what it answers to `sent`.
    fn with_dependencies(&self, name: &str, sent: &mut HashSet<String>) -> MessageResponse {
        let mut order = Vec::new();
        let mut todo = vec![name.to_owned()];
        while let Some(n) = todo.pop() {
            // The first one is the file asked for.
            let asked = order.is_empty();
            if !sent.insert(n.clone()) && !asked {
                continue;
            }
            if let Some((file, encoded)) = self.files.get(&n) {
                order.push(encoded.clone());
                todo.extend(file.dependency.iter().rev().cloned());
            }
        }
        MessageResponse::FileDescriptorResponse(FileDescriptorResponse {
            file_descriptor_proto: order,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(request: MessageRequest) -> ServerReflectionRequest {
        ServerReflectionRequest {
            host: "h".into(),
            message_request: Some(request),
        }
    }

    #[test]
    fn lists_and_describes_the_builtin_services() {
        idl::register_file_descriptor_set(super::super::proto::reflection::v1::FILE_DESCRIPTOR_SET);
        let service = ReflectionService::new(vec![
            super::super::REFLECTION.into(),
            super::super::HEALTH.into(),
        ]);
        let list = service.answer(ask(MessageRequest::ListServices(String::new())));
        assert_eq!(list.valid_host, "h");
        let Some(MessageResponse::ListServicesResponse(l)) = list.message_response else {
            panic!("{list:?}")
        };
        let names: Vec<&str> = l.service.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, vec![super::super::HEALTH, super::super::REFLECTION]);

        for symbol in [
            "grpc.health.v1.Health",
            "grpc.health.v1.Health.Watch",
            ".grpc.health.v1.HealthCheckResponse.ServingStatus",
            "grpc.reflection.v1alpha.ServerReflection",
        ] {
            let r = service.answer(ask(MessageRequest::FileContainingSymbol(symbol.into())));
            let Some(MessageResponse::FileDescriptorResponse(f)) = r.message_response else {
                panic!("{symbol}: {r:?}")
            };
            let file = FileDescriptorProto::decode(&f.file_descriptor_proto[0][..]).unwrap();
            assert!(
                file.name().starts_with("grpc/"),
                "{symbol}: {}",
                file.name()
            );
        }
        let r = service.answer(ask(MessageRequest::FileContainingSymbol("no.Such".into())));
        let Some(MessageResponse::ErrorResponse(e)) = r.message_response else {
            panic!("{r:?}")
        };
        assert_eq!(e.error_code, grpc::NOT_FOUND as i32);
    }
}
