//! The prost [`ServiceGenerator`]: one trait, server and client per protobuf service.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use prost_build::{Comments, Method, Service, ServiceGenerator};

/// Generates rdubbo services, referring to the facade at `runtime`.
pub(crate) struct Generator {
    runtime: TokenStream,
    descriptor_expr: TokenStream,
}

impl Generator {
    pub(crate) fn new(runtime: &str, descriptor_expr: &str) -> Self {
        Generator {
            runtime: tokens(runtime),
            descriptor_expr: tokens(descriptor_expr),
        }
    }
}

fn tokens(s: &str) -> TokenStream {
    match s.parse() {
        Ok(t) => t,
        // Not Rust: make the generated file fail to compile with the reason.
        Err(_) => {
            let msg = format!("rdubbo-build: `{s}` is not a Rust path or expression");
            quote!(::std::compile_error!(#msg))
        }
    }
}

/// The comments of a protobuf item as doc attributes, then `more` (a paragraph of its
/// own when there were comments).
fn docs(comments: &Comments, more: &str) -> TokenStream {
    let mut lines: Vec<String> = comments
        .leading
        .iter()
        .chain(&comments.trailing)
        .map(|line| line.replace('\t', "    "))
        .collect();
    if !lines.is_empty() {
        lines.push(String::new());
    }
    lines.push(format!(" {more}"));
    quote!(#(#[doc = #lines])*)
}

/// What kind of rpc a method is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Unary,
    ServerStream,
    ClientStream,
    BidiStream,
}

fn kind(m: &Method) -> Kind {
    match (m.client_streaming, m.server_streaming) {
        (false, false) => Kind::Unary,
        (false, true) => Kind::ServerStream,
        (true, false) => Kind::ClientStream,
        (true, true) => Kind::BidiStream,
    }
}

impl ServiceGenerator for Generator {
    fn generate(&mut self, service: Service, buf: &mut String) {
        buf.push_str(&self.service(&service).to_string());
        buf.push('\n');
    }

    fn finalize_package(&mut self, package: &str, buf: &mut String) {
        let expr = &self.descriptor_expr;
        let doc = format!(
            " Encoded `FileDescriptorSet` of the files that made package `{package}` and of their imports (for server reflection)."
        );
        buf.push_str(
            &quote! {
                #[doc = #doc]
                pub const FILE_DESCRIPTOR_SET: &[u8] = #expr;
            }
            .to_string(),
        );
        buf.push('\n');
    }
}

impl Generator {
    fn service(&self, s: &Service) -> TokenStream {
        let rt = &self.runtime;
        let full_name = if s.package.is_empty() {
            s.proto_name.clone()
        } else {
            format!("{}.{}", s.package, s.proto_name)
        };
        let name = format_ident!("{}", s.name);
        let server = format_ident!("{}Server", s.name);
        let client = format_ident!("{}Client", s.name);
        let trait_docs = docs(
            &s.comments,
            &format!(
                "The protobuf service `{full_name}`: implement it, serve it with [`{server}`]."
            ),
        );
        let server_doc =
            format!(" Provider-side dispatcher of [`{name}`]: an `Invoker` serving `{full_name}`.");
        let client_doc = format!(" Typed consumer stub of `{full_name}` over any `Invoker`.");

        let mut trait_methods = Vec::new();
        let mut arms = Vec::new();
        let mut client_methods = Vec::new();
        let mut wires = Vec::new();
        let mut streams = Vec::new();
        for m in &s.methods {
            let ident = format_ident!("{}", m.name);
            let wire = &m.proto_name;
            wires.push(wire.clone());
            let input = tokens(&m.input_type);
            let output = tokens(&m.output_type);
            let mdocs = docs(&m.comments, &format!("`/{full_name}/{wire}`"));
            let k = kind(m);
            let streaming = |t: &TokenStream| quote!(#rt::idl::Streaming<#t>);
            let (param, param_name, result) = match k {
                Kind::Unary => (quote!(#input), quote!(request), quote!(#output)),
                Kind::ServerStream => (quote!(#input), quote!(request), streaming(&output)),
                Kind::ClientStream => (streaming(&input), quote!(requests), quote!(#output)),
                Kind::BidiStream => (streaming(&input), quote!(requests), streaming(&output)),
            };
            let kind_tokens = match k {
                Kind::Unary => quote!(Unary),
                Kind::ServerStream => quote!(ServerStream),
                Kind::ClientStream => quote!(ClientStream),
                Kind::BidiStream => quote!(BidiStream),
            };
            if k != Kind::Unary {
                streams.push(quote! {
                    (::std::string::String::from(#wire), #rt::MethodKind::#kind_tokens)
                });
            }
            trait_methods.push(quote! {
                #mdocs
                fn #ident(&self, #param_name: #param)
                    -> impl ::std::future::Future<Output = #rt::RpcResult<#result>> + ::std::marker::Send;
            });
            let read = match k {
                Kind::Unary | Kind::ServerStream => quote! {
                    let request: #input =
                        #rt::idl::codegen::request(&interface, #wire, invocation.args).await?;
                },
                Kind::ClientStream | Kind::BidiStream => quote! {
                    let request: #rt::idl::Streaming<#input> =
                        #rt::idl::codegen::requests(invocation.args)?;
                },
            };
            // No `let` of the answer: it may be `()` (google.protobuf.Empty).
            let answer = match k {
                Kind::Unary | Kind::ClientStream => quote! {
                    ::std::result::Result::Ok(#rt::idl::codegen::reply(&inner.#ident(request).await?))
                },
                Kind::ServerStream | Kind::BidiStream => quote! {
                    ::std::result::Result::Ok(#rt::idl::codegen::replies(inner.#ident(request).await?))
                },
            };
            arms.push(quote! {
                #wire => {
                    #read
                    #answer
                }
            });
            let (client_param, args) = match k {
                Kind::Unary => (
                    quote!(request: #input),
                    quote!(#rt::idl::codegen::message_args(&request)),
                ),
                Kind::ServerStream => (
                    quote!(request: #input),
                    quote!(#rt::idl::codegen::stream_args(&request)),
                ),
                Kind::ClientStream | Kind::BidiStream => (
                    quote!(requests: impl ::std::convert::Into<#rt::idl::Streaming<#input>>),
                    quote!(#rt::idl::codegen::streaming_args(requests.into())),
                ),
            };
            let decode = match k {
                Kind::Unary | Kind::ClientStream => quote! {
                    #rt::idl::codegen::response(Self::SERVICE, #wire, reply).await
                },
                Kind::ServerStream | Kind::BidiStream => quote! {
                    #rt::idl::codegen::responses(reply)
                },
            };
            client_methods.push(quote! {
                #mdocs
                pub async fn #ident(&self, #client_param) -> #rt::RpcResult<#result> {
                    let reply = self.call(#wire, #args).await?;
                    #decode
                }
            });
        }

        quote! {
            #trait_docs
            pub trait #name: ::std::marker::Send + ::std::marker::Sync + 'static {
                #(#trait_methods)*
            }

            #[doc = #server_doc]
            pub struct #server<T: #name> {
                inner: ::std::sync::Arc<T>,
            }

            impl<T: #name> ::std::clone::Clone for #server<T> {
                fn clone(&self) -> Self {
                    Self { inner: ::std::sync::Arc::clone(&self.inner) }
                }
            }

            impl<T: #name> #server<T> {
                /// The service name on the wire (`package.Service`).
                pub const SERVICE: &'static str = #full_name;

                /// Wraps a service implementation.
                pub fn new(service: T) -> Self {
                    Self::from_arc(::std::sync::Arc::new(service))
                }

                /// Wraps a shared service implementation.
                pub fn from_arc(service: ::std::sync::Arc<T>) -> Self {
                    #rt::idl::register_file_descriptor_set(FILE_DESCRIPTOR_SET);
                    Self { inner: service }
                }

                /// The exported identity: the protobuf service name, its methods and the
                /// kind of each streaming one.
                pub fn info() -> #rt::ServiceInfo {
                    #rt::idl::register_file_descriptor_set(FILE_DESCRIPTOR_SET);
                    #rt::ServiceInfo {
                        interface: ::std::string::String::from(#full_name),
                        version: ::std::option::Option::None,
                        group: ::std::option::Option::None,
                        methods: ::std::vec![#(::std::string::String::from(#wires)),*],
                        idl: true,
                        streams: ::std::vec![#(#streams),*],
                    }
                }

                async fn dispatch(
                    inner: ::std::sync::Arc<T>,
                    invocation: #rt::Invocation,
                ) -> #rt::RpcResult<#rt::Reply> {
                    let interface = ::std::sync::Arc::clone(&invocation.interface);
                    match &*invocation.method {
                        #(#arms)*
                        other => ::std::result::Result::Err(
                            #rt::idl::codegen::method_not_found(&interface, other),
                        ),
                    }
                }
            }

            impl<T: #name> #rt::Invoker for #server<T> {
                fn invoke(
                    &self,
                    invocation: #rt::Invocation,
                ) -> #rt::BoxFuture<'static, #rt::RpcResult<#rt::Reply>> {
                    let context = #rt::idl::codegen::incoming(&invocation);
                    ::std::boxed::Box::pin(#rt::idl::codegen::scoped(
                        context,
                        Self::dispatch(::std::sync::Arc::clone(&self.inner), invocation),
                    ))
                }
            }

            #[doc = #client_doc]
            #[derive(Clone)]
            pub struct #client {
                invoker: ::std::sync::Arc<dyn #rt::Invoker>,
                version: ::std::option::Option<::std::sync::Arc<str>>,
                group: ::std::option::Option<::std::sync::Arc<str>>,
                timeout: ::std::option::Option<::std::time::Duration>,
            }

            impl #client {
                /// The service name on the wire (`package.Service`).
                pub const SERVICE: &'static str = #full_name;

                /// A stub calling through `invoker` (a protocol client, a reference, a
                /// filter chain, a server in-process…).
                pub fn new(invoker: ::std::sync::Arc<dyn #rt::Invoker>) -> Self {
                    Self {
                        invoker,
                        version: ::std::option::Option::None,
                        group: ::std::option::Option::None,
                        timeout: ::std::option::Option::None,
                    }
                }

                /// Calls a version of the service (`tri-service-version`; `None`: unversioned).
                pub fn with_version(mut self, version: ::std::option::Option<&str>) -> Self {
                    self.version = version.filter(|v| !v.is_empty()).map(::std::sync::Arc::from);
                    self
                }

                /// Calls a group of the service (`tri-service-group`; `None`: no group).
                pub fn with_group(mut self, group: ::std::option::Option<&str>) -> Self {
                    self.group = group.filter(|g| !g.is_empty()).map(::std::sync::Arc::from);
                    self
                }

                /// Sets the deadline of every call (`grpc-timeout`; for a streaming call,
                /// of the whole stream).
                pub fn with_timeout(mut self, timeout: ::std::time::Duration) -> Self {
                    self.timeout = ::std::option::Option::Some(timeout);
                    self
                }

                async fn call(
                    &self,
                    method: &'static str,
                    args: #rt::Args,
                ) -> #rt::RpcResult<#rt::Reply> {
                    let mut invocation = #rt::Invocation::new(Self::SERVICE, method, args);
                    invocation.version = self.version.clone();
                    invocation.group = self.group.clone();
                    invocation.timeout = self.timeout;
                    #rt::idl::codegen::outgoing(&mut invocation);
                    #rt::Invoker::invoke(&*self.invoker, invocation).await
                }

                #(#client_methods)*
            }
        }
    }
}
