//! Authentication for every RPC, in one place (DESIGN.md §10): a tower layer in front
//! of all services reads the call's path, finds its rule (`identity::rules`), checks the
//! bearer token and the role, and hands the handler a [`Caller`] in the request's
//! extensions. Health and reflection stay open; CSI calls may carry the token in their
//! `secrets` map instead of the header, which only the handler can read.
//!
//! Tokens are high-entropy secrets, so a check is one keyed hash and, on a cache miss,
//! one indexed lookup; hits cost neither. A revocation on this node clears the cache at
//! once; one on another node sharing the catalog is seen within [`CACHE_TTL`].

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tonic::Status;
use tonic::codegen::http;
use tracing::Instrument;

use crate::catalog::TokenRecord;
use crate::engine::Service;
use crate::identity::rules::{self, Rule};
use crate::identity::{Caller, Role, token};

/// How long a checked token is trusted without asking the catalog again.
pub const CACHE_TTL: Duration = Duration::from_secs(10);
/// How often a token's `last_used_at` is written, at most.
const TOUCH_EVERY: Duration = Duration::from_secs(60);
/// Entries kept at most; past it the cache starts over (tokens are few, callers many).
const CACHE_MAX: usize = 4096;

/// The header an admin names the project it acts for in.
pub const PROJECT_HEADER: &str = "x-blockdelta-project";

struct Cached {
    token: TokenRecord,
    checked: Instant,
}

/// Checks tokens against the catalog, with a small cache.
pub struct Authenticator {
    svc: Arc<Service>,
    cache: Mutex<HashMap<String, Cached>>,
    touched: Mutex<HashMap<String, Instant>>,
}

impl Authenticator {
    pub fn new(svc: Arc<Service>) -> Arc<Authenticator> {
        Arc::new(Authenticator {
            svc,
            cache: Mutex::new(HashMap::new()),
            touched: Mutex::new(HashMap::new()),
        })
    }

    /// Forgets a revoked token at once.
    pub fn forget(&self, token_id: &str) {
        crate::sync::lock(&self.cache).retain(|_, c| c.token.id != token_id);
    }

    /// The token a bearer secret is, or UNAUTHENTICATED.
    async fn token(&self, secret: &str) -> Result<TokenRecord, Status> {
        let unknown = || Status::unauthenticated("unknown or revoked token");
        if !token::well_formed(secret) {
            return Err(unknown());
        }
        if let Some(c) = crate::sync::lock(&self.cache).get(secret)
            && c.checked.elapsed() < CACHE_TTL
        {
            let t = c.token.clone();
            self.touch(&t.id);
            return Ok(t);
        }
        let svc = self.svc.clone();
        let owned = secret.to_string();
        let found = tokio::task::spawn_blocking(move || svc.token_for_secret(&owned))
            .await
            .map_err(super::status::join_error)?
            .map_err(|e| super::status::to_status(e.into()))?;
        let Some(t) = found else {
            crate::sync::lock(&self.cache).remove(secret);
            return Err(unknown());
        };
        let mut cache = crate::sync::lock(&self.cache);
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(
            secret.to_string(),
            Cached {
                token: t.clone(),
                checked: Instant::now(),
            },
        );
        drop(cache);
        self.touch(&t.id);
        Ok(t)
    }

    /// Writes `last_used_at` in the background, at most once a minute per token.
    fn touch(&self, id: &str) {
        {
            let mut touched = crate::sync::lock(&self.touched);
            if touched.get(id).is_some_and(|t| t.elapsed() < TOUCH_EVERY) {
                return;
            }
            touched.insert(id.to_string(), Instant::now());
        }
        let svc = self.svc.clone();
        let id = id.to_string();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = svc.touch_token(&id) {
                tracing::debug!(token = %id, error = %e, "cannot record the token's last use");
            }
        });
    }

    /// The caller a secret and an optional acting-for project make, if `needed` allows.
    async fn caller(
        &self,
        secret: &str,
        acting_for: Option<&str>,
        needed: Role,
    ) -> Result<Caller, Status> {
        let t = self.token(secret).await?;
        if !t.role.at_least(needed) {
            return Err(Status::permission_denied(format!(
                "token {} has role {}; this call needs {needed}",
                t.id, t.role
            )));
        }
        let acting_for = match acting_for {
            None => None,
            Some(p) if p == t.project => None,
            Some(p) if t.role != Role::Admin => {
                return Err(Status::permission_denied(format!(
                    "only an admin may act for project {p} ({PROJECT_HEADER})"
                )));
            }
            Some(p) => {
                let svc = self.svc.clone();
                let name = p.to_string();
                let exists = tokio::task::spawn_blocking(move || {
                    svc.project(&Caller::system(), &name).is_ok()
                })
                .await
                .map_err(super::status::join_error)?;
                if !exists {
                    return Err(Status::not_found(format!("project {p} not found")));
                }
                Some(p.to_string())
            }
        };
        Ok(Caller {
            project: t.project,
            role: t.role,
            token_id: t.id,
            acting_for,
        })
    }

    /// What the layer decides for a call: open (no caller), a caller, or a refusal.
    async fn admit(&self, path: &str, headers: &http::HeaderMap) -> Result<Option<Caller>, Status> {
        let Some(rule) = rules::rule(path) else {
            return Err(Status::permission_denied(format!(
                "{path}: no access rule for this call"
            )));
        };
        let needed = match rule {
            Rule::Open => return Ok(None),
            Rule::Token(r) | Rule::CsiSecurityToken(r) => r,
        };
        let acting_for = header(headers, PROJECT_HEADER)?;
        match header(headers, "authorization")? {
            Some(value) => {
                let secret = token::from_authorization(value).ok_or_else(|| {
                    Status::unauthenticated("authorization must be \"Bearer <token>\"")
                })?;
                self.caller(secret, acting_for, needed).await.map(Some)
            }
            // The handler authenticates from the request's secrets map.
            None if matches!(rule, Rule::CsiSecurityToken(_)) => Ok(None),
            None => Err(Status::unauthenticated(
                "no token: send \"authorization: Bearer <token>\" (the CLI: --token or BLOCKDELTA_TOKEN)",
            )),
        }
    }

    /// A CSI call's caller: the header's (already in `extensions`) or the `secrets` map's
    /// `token` (or `security_token`) entry.
    pub async fn csi_caller(
        &self,
        extensions: &tonic::Extensions,
        secrets: &HashMap<String, String>,
    ) -> Result<Caller, Status> {
        if let Some(c) = extensions.get::<Caller>() {
            return Ok(c.clone());
        }
        let secret = secrets
            .get("token")
            .or_else(|| secrets.get("security_token"))
            .ok_or_else(|| {
                Status::unauthenticated(
                    "no token: send \"authorization: Bearer <token>\" or secrets[\"token\"]",
                )
            })?;
        self.caller(secret, None, Role::Reader).await
    }
}

fn header<'a>(headers: &'a http::HeaderMap, name: &str) -> Result<Option<&'a str>, Status> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .map_err(|_| Status::unauthenticated(format!("{name} header is not text")))
        })
        .transpose()
}

/// The authenticated caller the layer put in a request.
pub fn caller<T>(req: &tonic::Request<T>) -> Result<Caller, Status> {
    req.extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("no token"))
}

/// The tower layer that puts [`Authenticator`] in front of every service.
#[derive(Clone)]
pub struct AuthLayer {
    pub auth: Arc<Authenticator>,
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> AuthService<S> {
        AuthService {
            inner,
            auth: self.auth.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    auth: Arc<Authenticator>,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for AuthService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        // The clone that was polled ready serves this call (tower's rule for cloned services).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = self.auth.clone();
        // Every line logged while this call is served carries its request id, which the
        // answer carries too (`x-request-id`), so a user's report finds the server's lines.
        let request_id = format!("{:016x}", rand::random::<u64>());
        let method = req.uri().path().to_string();
        let span = tracing::info_span!("request", request_id = %request_id, method = %method);
        let started = std::time::Instant::now();
        Box::pin(
            async move {
                let mut answer = match auth.admit(req.uri().path(), req.headers()).await {
                    Ok(caller) => {
                        if let Some(c) = &caller {
                            tracing::debug!(token = %c.token_id, role = %c.role, "call");
                            req.extensions_mut().insert(c.clone());
                        }
                        inner.call(req).await?
                    }
                    Err(status) => {
                        tracing::debug!(code = ?status.code(), reason = status.message(), "refused");
                        status.into_http()
                    }
                };
                if let Ok(v) = http::HeaderValue::from_str(&request_id) {
                    answer.headers_mut().insert("x-request-id", v);
                }
                tracing::debug!(ms = started.elapsed().as_millis() as u64, "answered");
                Ok(answer)
            }
            .instrument(span),
        )
    }
}
