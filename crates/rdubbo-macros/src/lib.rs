//! `#[rdubbo::service]`: turns a trait into a Dubbo service definition.
//!
//! Use it through the `rdubbo` crate (`#[rdubbo::service(...)]`); the generated code refers to
//! `::rdubbo`. For a trait `Greeter` it generates:
//! - the trait itself, with `Send + Sync + 'static` supertraits and each `async fn` turned into
//!   a method returning a `Send` future, so implementations are written with plain `async fn`;
//! - `GreeterServer<T>`, the provider-side dispatcher: an `Invoker` that decodes positional
//!   arguments, calls `T`'s method and encodes the result;
//! - `GreeterClient`, the typed consumer stub over any `Arc<dyn Invoker>`.
//!
//! Method names on the wire are lowerCamelCase (`say_hello` → `sayHello`) unless a method
//! says otherwise with `#[rdubbo(name = "...")]`.

use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;
use quote::{format_ident, quote};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{
    parse_macro_input, parse_quote, Error, Expr, ExprLit, FnArg, GenericArgument, ItemTrait, Lit,
    Meta, MetaNameValue, Pat, PathArguments, ReturnType, Token, TraitItem, Type,
};

/// Defines a service from a trait. Arguments (all optional): `interface = "..."` (default:
/// the trait name), `version = "..."`, `group = "..."`.
#[proc_macro_attribute]
pub fn service(attr: TokenStream, item: TokenStream) -> TokenStream {
    let args =
        parse_macro_input!(attr with Punctuated::<MetaNameValue, Token![,]>::parse_terminated);
    let item = parse_macro_input!(item as ItemTrait);
    match expand(args, item) {
        Ok(ts) => ts.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

struct Method {
    ident: syn::Ident,
    wire: String,
    docs: Vec<syn::Attribute>,
    args: Vec<(syn::Ident, Type)>,
    /// Per parameter: the descriptor a `#[rdubbo(java = "...")]` names, if any.
    java: Vec<Option<String>>,
    output: Type,
    ok: Type,
}

fn string_value(expr: &Expr) -> syn::Result<String> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => Ok(s.value()),
        other => Err(Error::new(other.span(), "expected a string literal")),
    }
}

fn lower_camel(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for (i, c) in name.chars().enumerate() {
        if c == '_' && i > 0 {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// `RpcResult<T>` / `Result<T, E>` → `T`.
fn ok_type(ty: &Type) -> Option<Type> {
    let Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    args.args.iter().find_map(|a| match a {
        GenericArgument::Type(t) => Some(t.clone()),
        _ => None,
    })
}

/// `&[Cow::Borrowed(descriptor), ...]` of a method's parameters: an override's literal, or
/// the type's `JavaType::DESCRIPTOR`.
fn descriptor_tokens(m: &Method) -> TokenStream2 {
    let each = m
        .args
        .iter()
        .zip(&m.java)
        .map(|((_, ty), java)| match java {
            Some(d) => quote!(::std::borrow::Cow::Borrowed(#d)),
            None => quote!(::std::borrow::Cow::Borrowed(<#ty as ::rdubbo::JavaType>::DESCRIPTOR)),
        });
    quote!(&[#(#each),*])
}

/// A Java type name or descriptor (`long`, `java.lang.Long`, `int[]`, `J`) as a descriptor.
fn descriptor_from_name(name: &str) -> String {
    let name = name.trim();
    if let Some(inner) = name.strip_suffix("[]") {
        return format!("[{}", descriptor_from_name(inner));
    }
    match name {
        "boolean" => "Z".into(),
        "byte" => "B".into(),
        "short" => "S".into(),
        "int" => "I".into(),
        "long" => "J".into(),
        "float" => "F".into(),
        "double" => "D".into(),
        "char" => "C".into(),
        d if d.len() == 1 || d.starts_with('[') || (d.starts_with('L') && d.ends_with(';')) => {
            d.to_string()
        }
        class => format!("L{};", class.replace('.', "/")),
    }
}

fn expand(
    args: Punctuated<MetaNameValue, Token![,]>,
    mut item: ItemTrait,
) -> syn::Result<TokenStream2> {
    let mut interface = item.ident.to_string();
    let mut version: Option<String> = None;
    let mut group: Option<String> = None;
    for nv in &args {
        let key = nv
            .path
            .get_ident()
            .map(|i| i.to_string())
            .unwrap_or_default();
        let value = string_value(&nv.value)?;
        match key.as_str() {
            "interface" => interface = value,
            "version" => version = Some(value).filter(|v| !v.is_empty()),
            "group" => group = Some(value).filter(|g| !g.is_empty()),
            _ => {
                return Err(Error::new(
                    nv.path.span(),
                    "unknown argument: expected interface, version or group",
                ))
            }
        }
    }
    if !item.generics.params.is_empty() {
        return Err(Error::new(
            item.generics.span(),
            "service traits cannot be generic",
        ));
    }

    let mut methods = Vec::new();
    for ti in item.items.iter_mut() {
        let TraitItem::Fn(f) = ti else {
            return Err(Error::new(
                ti.span(),
                "a service trait holds only async methods",
            ));
        };
        let sig = &mut f.sig;
        if sig.asyncness.is_none() {
            return Err(Error::new(
                sig.fn_token.span(),
                "service methods must be `async fn`",
            ));
        }
        if !sig.generics.params.is_empty() {
            return Err(Error::new(
                sig.generics.span(),
                "service methods cannot be generic",
            ));
        }
        match sig.inputs.iter().next() {
            Some(FnArg::Receiver(r)) if r.reference.is_some() && r.mutability.is_none() => {}
            Some(other) => return Err(Error::new(other.span(), "service methods take `&self`")),
            None => return Err(Error::new(sig.span(), "service methods take `&self`")),
        }
        let mut margs = Vec::new();
        let mut java = Vec::new();
        for input in sig.inputs.iter_mut().skip(1) {
            let FnArg::Typed(pt) = input else {
                return Err(Error::new(input.span(), "unexpected receiver"));
            };
            let mut java_type = None;
            let mut keep = Vec::new();
            for a in pt.attrs.drain(..) {
                if a.path().is_ident("rdubbo") {
                    let nv: MetaNameValue = a.parse_args().map_err(|e| {
                        Error::new(e.span(), "expected #[rdubbo(java = \"java.lang.Long\")]")
                    })?;
                    if !nv.path.is_ident("java") {
                        return Err(Error::new(
                            nv.path.span(),
                            "expected `java = \"...\"` (a Java type or JVM descriptor)",
                        ));
                    }
                    java_type = Some(descriptor_from_name(&string_value(&nv.value)?));
                } else {
                    keep.push(a);
                }
            }
            pt.attrs = keep;
            java.push(java_type);
            let Pat::Ident(pi) = &*pt.pat else {
                return Err(Error::new(
                    pt.pat.span(),
                    "arguments must be plain identifiers",
                ));
            };
            margs.push((pi.ident.clone(), (*pt.ty).clone()));
        }
        let ReturnType::Type(_, output) = &sig.output else {
            return Err(Error::new(
                sig.span(),
                "service methods return `RpcResult<T>`",
            ));
        };
        let output = (**output).clone();
        let ok = ok_type(&output)
            .ok_or_else(|| Error::new(output.span(), "service methods return `RpcResult<T>`"))?;

        let mut wire = lower_camel(&sig.ident.to_string());
        let mut keep = Vec::new();
        for a in f.attrs.drain(..) {
            if a.path().is_ident("rdubbo") {
                let nv: MetaNameValue = match &a.meta {
                    Meta::List(l) => l.parse_args()?,
                    other => {
                        return Err(Error::new(
                            other.span(),
                            "expected #[rdubbo(name = \"...\")]",
                        ))
                    }
                };
                if !nv.path.is_ident("name") {
                    return Err(Error::new(nv.path.span(), "expected `name = \"...\"`"));
                }
                wire = string_value(&nv.value)?;
            } else {
                keep.push(a);
            }
        }
        f.attrs = keep;
        let docs = f
            .attrs
            .iter()
            .filter(|a| a.path().is_ident("doc"))
            .cloned()
            .collect();

        sig.asyncness = None;
        sig.output =
            parse_quote!(-> impl ::std::future::Future<Output = #output> + ::std::marker::Send);
        methods.push(Method {
            ident: sig.ident.clone(),
            wire,
            docs,
            args: margs,
            java,
            output,
            ok,
        });
    }
    item.supertraits.push(parse_quote!(::std::marker::Send));
    item.supertraits.push(parse_quote!(::std::marker::Sync));
    item.supertraits.push(parse_quote!('static));

    let vis = &item.vis;
    let name = &item.ident;
    let server = format_ident!("{}Server", name);
    let client = format_ident!("{}Client", name);
    let opt = |v: &Option<String>| match v {
        Some(s) => quote!(::std::option::Option::Some(#s)),
        None => quote!(::std::option::Option::<&'static str>::None),
    };
    let version_tokens = opt(&version);
    let group_tokens = opt(&group);
    let mut wires: Vec<&String> = Vec::new();
    for m in &methods {
        if !wires.contains(&&m.wire) {
            wires.push(&m.wire);
        }
    }

    // Methods by wire name, in order: overloads share a name and differ in descriptors.
    let mut by_wire: Vec<(&String, Vec<&Method>)> = Vec::new();
    for m in &methods {
        match by_wire.iter_mut().find(|(w, _)| *w == &m.wire) {
            Some((_, list)) => list.push(m),
            None => by_wire.push((&m.wire, vec![m])),
        }
    }
    let arms = by_wire.iter().map(|(wire, candidates)| {
        let signatures = candidates.iter().map(|m| {
            let types = descriptor_tokens(m);
            let n = m.args.len();
            quote!((#types, #n))
        });
        let bodies = candidates.iter().enumerate().map(|(k, m)| {
            let ident = &m.ident;
            let decode = m.args.iter().enumerate().map(|(i, (arg, ty))| {
                let arg_name = arg.to_string();
                quote! {
                    let #arg: #ty = ::rdubbo::__private::from_arg(&mut args, &interface, #wire, #i, #arg_name)?;
                }
            });
            let names: Vec<&syn::Ident> = m.args.iter().map(|(a, _)| a).collect();
            let names2 = &names;
            let read = if names.is_empty() {
                quote!()
            } else {
                quote! {
                    let (#(#names,)*) = {
                        let mut args = invocation.args.decoder();
                        #(#decode)*
                        (#(#names2,)*)
                    };
                }
            };
            quote! {
                #k => {
                    #read
                    let out = inner.#ident(#(#names2),*).await?;
                    ::std::result::Result::Ok(::rdubbo::Reply::typed(out))
                }
            }
        });
        quote! {
            #wire => {
                let signatures: &[(&[::std::borrow::Cow<'static, str>], usize)] = &[#(#signatures),*];
                match ::rdubbo::__private::pick(&interface, #wire, &invocation, signatures)? {
                    #(#bodies)*
                    _ => ::std::unreachable!(),
                }
            }
        }
    });

    let client_methods = methods.iter().map(|m| {
        let ident = &m.ident;
        let wire = &m.wire;
        let output = &m.output;
        let ok = &m.ok;
        let docs = &m.docs;
        let params = m.args.iter().map(|(a, t)| quote!(#a: #t));
        let names = m.args.iter().map(|(a, _)| a);
        let types = descriptor_tokens(m);
        quote! {
            #(#docs)*
            pub async fn #ident(&self, #(#params),*) -> #output {
                const TYPES: &[::std::borrow::Cow<'static, str>] = #types;
                let args = ::rdubbo::Args::typed((#(#names,)*));
                let reply = self.call(#wire, args, TYPES).await?;
                ::rdubbo::__private::from_result::<#ok>(Self::INTERFACE, #wire, reply)
            }
        }
    });

    let server_doc =
        format!("Provider-side dispatcher of `{name}`: an `Invoker` serving `{interface}`.");
    let client_doc = format!("Typed consumer stub of `{interface}` over any `Invoker`.");
    Ok(quote! {
        #item

        #[doc = #server_doc]
        #vis struct #server<T: #name> {
            inner: ::std::sync::Arc<T>,
        }

        impl<T: #name> ::std::clone::Clone for #server<T> {
            fn clone(&self) -> Self {
                Self { inner: ::std::sync::Arc::clone(&self.inner) }
            }
        }

        impl<T: #name> #server<T> {
            /// Wraps a service implementation.
            pub fn new(service: T) -> Self {
                Self { inner: ::std::sync::Arc::new(service) }
            }
            /// Wraps a shared service implementation.
            pub fn from_arc(service: ::std::sync::Arc<T>) -> Self {
                Self { inner: service }
            }
            /// The exported identity: interface, version, group and wire method names.
            pub fn info() -> ::rdubbo::ServiceInfo {
                ::rdubbo::ServiceInfo {
                    interface: ::std::string::String::from(#interface),
                    version: #version_tokens.map(::std::string::String::from),
                    group: #group_tokens.map(::std::string::String::from),
                    methods: ::std::vec![#(::std::string::String::from(#wires)),*],
                    ..::core::default::Default::default()
                }
            }
        }

        impl<T: #name> #server<T> {
            async fn dispatch(
                inner: ::std::sync::Arc<T>,
                invocation: ::rdubbo::Invocation,
            ) -> ::rdubbo::RpcResult<::rdubbo::Reply> {
                let interface = ::std::sync::Arc::clone(&invocation.interface);
                match &*invocation.method {
                    #(#arms)*
                    other => ::std::result::Result::Err(::rdubbo::__private::method_not_found(&interface, other)),
                }
            }
        }

        impl<T: #name> ::rdubbo::Invoker for #server<T> {
            fn invoke(
                &self,
                invocation: ::rdubbo::Invocation,
            ) -> ::rdubbo::BoxFuture<'static, ::rdubbo::RpcResult<::rdubbo::Reply>> {
                let context = ::rdubbo::__private::incoming(&invocation);
                ::std::boxed::Box::pin(::rdubbo::__private::scoped(
                    context,
                    Self::dispatch(::std::sync::Arc::clone(&self.inner), invocation),
                ))
            }
        }

        #[doc = #client_doc]
        #[derive(Clone)]
        #vis struct #client {
            invoker: ::std::sync::Arc<dyn ::rdubbo::Invoker>,
            version: ::std::option::Option<::std::sync::Arc<str>>,
            group: ::std::option::Option<::std::sync::Arc<str>>,
            timeout: ::std::option::Option<::std::time::Duration>,
        }

        impl #client {
            /// The interface name on the wire.
            pub const INTERFACE: &'static str = #interface;
            /// The version the service was defined with.
            pub const VERSION: ::std::option::Option<&'static str> = #version_tokens;
            /// The group the service was defined with.
            pub const GROUP: ::std::option::Option<&'static str> = #group_tokens;

            /// A stub calling through `invoker` (a protocol client, a cluster, a filter chain…).
            pub fn new(invoker: ::std::sync::Arc<dyn ::rdubbo::Invoker>) -> Self {
                Self {
                    invoker,
                    version: Self::VERSION.map(::std::sync::Arc::from),
                    group: Self::GROUP.map(::std::sync::Arc::from),
                    timeout: ::std::option::Option::None,
                }
            }
            /// Calls another version (`None`: unversioned).
            pub fn with_version(mut self, version: ::std::option::Option<&str>) -> Self {
                self.version = version.filter(|v| !v.is_empty()).map(::std::sync::Arc::from);
                self
            }
            /// Calls another group (`None`: no group).
            pub fn with_group(mut self, group: ::std::option::Option<&str>) -> Self {
                self.group = group.filter(|g| !g.is_empty()).map(::std::sync::Arc::from);
                self
            }
            /// Sets the timeout of every call.
            pub fn with_timeout(mut self, timeout: ::std::time::Duration) -> Self {
                self.timeout = ::std::option::Option::Some(timeout);
                self
            }

            async fn call(
                &self,
                method: &'static str,
                args: ::rdubbo::Args,
                types: &'static [::std::borrow::Cow<'static, str>],
            ) -> ::rdubbo::RpcResult<::rdubbo::Reply> {
                let mut invocation = ::rdubbo::Invocation::new(Self::INTERFACE, method, args);
                invocation.parameter_types = ::std::borrow::Cow::Borrowed(types);
                invocation.version = self.version.clone();
                invocation.group = self.group.clone();
                invocation.timeout = self.timeout;
                ::rdubbo::__private::outgoing(&mut invocation);
                ::rdubbo::Invoker::invoke(&*self.invoker, invocation).await
            }

            #(#client_methods)*
        }
    })
}

/// Derives `rdubbo::JavaType` for a struct or enum sent as a Java class: a POJO, or an
/// enum of unit variants sent as a Java enum. The class is the one the type's
/// `#[serde(rename = "com.example.User")]` names (what the Hessian2 serializer writes), or
/// `#[java(class = "com.example.User")]`.
#[proc_macro_derive(JavaType, attributes(java))]
pub fn derive_java_type(item: TokenStream) -> TokenStream {
    let input = parse_macro_input!(item as syn::DeriveInput);
    match java_class(&input) {
        Ok(class) => {
            let name = &input.ident;
            let (imp, ty, wh) = input.generics.split_for_impl();
            let descriptor = format!("L{};", class.replace('.', "/"));
            quote! {
                impl #imp ::rdubbo::JavaType for #name #ty #wh {
                    const DESCRIPTOR: &'static str = #descriptor;
                }
            }
            .into()
        }
        Err(e) => e.to_compile_error().into(),
    }
}

/// The Java class a derive input names.
fn java_class(input: &syn::DeriveInput) -> syn::Result<String> {
    let mut serde_rename = None;
    for a in &input.attrs {
        if a.path().is_ident("java") {
            let nv: MetaNameValue = a.parse_args()?;
            if !nv.path.is_ident("class") {
                return Err(Error::new(nv.path.span(), "expected `class = \"...\"`"));
            }
            return string_value(&nv.value);
        }
        if a.path().is_ident("serde") {
            if let Meta::List(l) = &a.meta {
                let items = l.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated);
                for m in items.into_iter().flatten() {
                    if let Meta::NameValue(nv) = m {
                        if nv.path.is_ident("rename") {
                            serde_rename = Some(string_value(&nv.value)?);
                        }
                    }
                }
            }
        }
    }
    let class = serde_rename.ok_or_else(|| {
        Error::new(
            input.ident.span(),
            "name the Java class: #[serde(rename = \"com.example.User\")] or #[java(class = \"com.example.User\")]",
        )
    })?;
    if !class.contains('.') {
        return Err(Error::new(
            input.ident.span(),
            format!("`{class}` is not a fully qualified Java class name (com.example.{class})"),
        ));
    }
    Ok(class)
}
