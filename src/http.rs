//! The router, the middleware every request passes, and the request/response conventions:
//! JSON bodies whose rejections are problem+json, validation, and `{data,total,limit,offset}` lists.

use std::time::{Duration, Instant};

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tower::Layer;
use utoipa::{IntoParams, ToSchema};

use crate::error::{AppError, AppResult, FieldError, TRACE_ID};
use crate::state::AppState;

/// Builds the whole HTTP application: API, docs, metrics, and the middleware around them.
pub fn router(state: AppState) -> axum::Router {
    let (api, openapi) = crate::openapi::api_router(&state).split_for_parts();
    let routes = axum::Router::new()
        .merge(api)
        .merge(crate::openapi::docs_router(openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            observe_request,
        ))
        .with_state(state);
    // The path is trimmed before routing, so the routes sit behind the trimming as the
    // fallback of a bare router.
    axum::Router::new()
        .fallback_service(tower::util::MapRequestLayer::new(trim_trailing_slash).layer(routes))
}

/// `/api/v1/costs/` is `/api/v1/costs`: the seeds write lists with a trailing slash. (Swagger
/// UI's `/docs/` is its own page.)
fn trim_trailing_slash(mut request: Request) -> Request {
    let path = request.uri().path();
    if path.len() > 1 && path.ends_with('/') && path.starts_with("/api/") {
        let trimmed = path.trim_end_matches('/');
        let path_and_query = match request.uri().query() {
            Some(query) => format!("{trimmed}?{query}"),
            None => trimmed.to_string(),
        };
        let mut parts = request.uri().clone().into_parts();
        parts.path_and_query = path_and_query.parse().ok();
        if let Ok(uri) = axum::http::Uri::from_parts(parts) {
            *request.uri_mut() = uri;
        }
    }
    request
}

/// Largest request body (the API routes; billing uploads have their own limit).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Serves `router` on `listener` until `shutdown` completes. Every connection gets
/// TCP_NODELAY: WebSocket log lines are small writes, and Nagle's algorithm with the client's
/// delayed ACKs would hold a burst of them back for tens of milliseconds.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|stream| {
        let _ = stream.set_nodelay(true);
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn not_found() -> AppError {
    AppError::NotFound("route")
}

async fn method_not_allowed() -> AppError {
    AppError::MethodNotAllowed("method not allowed for this route".into())
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Gives each request a trace id (echoed as `X-Request-Id`), logs it, counts it, and turns
/// bare error responses from layers (such as the body limit) into problem+json.
async fn observe_request(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let trace_id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.chars().all(|c| c.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = request.method().clone();
    let started = Instant::now();
    let mut response = TRACE_ID
        .scope(trace_id.clone(), async move {
            let response = next.run(request).await;
            problem_for_bare_error(response)
        })
        .await;
    let elapsed = started.elapsed();
    let status = response.status();
    state
        .metrics
        .observe_http(method.as_str(), &route, status.as_u16(), elapsed);
    tracing::info!(
        target: "strata::http",
        %method, route, status = status.as_u16(), elapsed_ms = elapsed.as_millis() as u64, trace_id,
        "request"
    );
    if let Ok(value) = HeaderValue::from_str(&trace_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

fn problem_for_bare_error(response: Response) -> Response {
    let status = response.status();
    let is_problem = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if status.is_success() || is_problem || status.is_redirection() {
        return response;
    }
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            AppError::PayloadTooLarge("the request body is too large (limit 1 MiB)".into())
                .into_response()
        }
        StatusCode::REQUEST_TIMEOUT => {
            AppError::BadRequest("request timed out".into()).into_response()
        }
        _ => response,
    }
}

/// `axum::Json`, but a body that cannot be read answers problem+json: 415 for a missing
/// content type, 400 for broken JSON, 422 for wrong types, missing fields and unknown values.
#[derive(Debug, Clone, Copy, Default, FromRequest)]
#[from_request(via(axum::Json), rejection(AppError))]
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

impl From<JsonRejection> for AppError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonDataError(err) => AppError::Unprocessable(err.body_text()),
            JsonRejection::JsonSyntaxError(err) => AppError::BadRequest(err.body_text()),
            JsonRejection::MissingJsonContentType(_) => AppError::UnsupportedMediaType(
                "expected a request body with `Content-Type: application/json`".into(),
            ),
            JsonRejection::BytesRejection(err) if err.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                AppError::PayloadTooLarge("the request body is too large (limit 1 MiB)".into())
            }
            other => AppError::BadRequest(other.body_text()),
        }
    }
}

/// `axum::extract::Path` with problem+json rejections.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(AppError))]
pub struct Path<T>(pub T);

impl From<PathRejection> for AppError {
    fn from(rejection: PathRejection) -> Self {
        AppError::BadRequest(rejection.body_text())
    }
}

/// `axum::extract::Query` with problem+json rejections.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(AppError))]
pub struct Query<T>(pub T);

impl From<QueryRejection> for AppError {
    fn from(rejection: QueryRejection) -> Self {
        AppError::BadRequest(rejection.body_text())
    }
}

/// Query parameters read strictly, for the cost views: a name written in camelCase (the
/// `startDate`, `tenantId` other clients send) is read as its snake_case twin; a name the route does not take
/// answers 422 naming it (a misspelt filter would otherwise be ignored, and the answer look
/// right); and `tenant_id`, taken everywhere, must be the caller's tenant (see
/// [`Params::for_tenant`]).
#[derive(Debug)]
pub struct Params<T> {
    value: T,
    tenant_id: Option<String>,
}

impl<T> Params<T> {
    /// The parameters, once `tenant_id` (if given) is the caller's: another tenant's id is a
    /// 404, as another tenant's row would be.
    pub fn for_tenant(self, tenant_id: uuid::Uuid) -> AppResult<T> {
        match self.tenant_id {
            Some(asked) if asked.parse::<uuid::Uuid>().ok() != Some(tenant_id) => {
                Err(AppError::NotFound("tenant"))
            }
            _ => Ok(self.value),
        }
    }
}

/// `startDate` is `start_date`; `start_date` stays.
fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 && !out.ends_with('_') {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

impl<S, T> FromRequestParts<S> for Params<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned + IntoParams,
{
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
        let pairs = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map_err(AppError::from)?
            .0;
        let known: Vec<String> = T::into_params(|| Some(utoipa::openapi::path::ParameterIn::Query))
            .into_iter()
            .map(|p| p.name)
            .collect();
        let (mut query, mut tenant_id, mut unknown) = (String::new(), None, Vec::new());
        for (name, value) in pairs {
            let name = snake_case(&name);
            if name == "tenant_id" {
                tenant_id = Some(value);
            } else if known.contains(&name) {
                if !query.is_empty() {
                    query.push('&');
                }
                query.extend(utf8_percent_encode(&name, NON_ALPHANUMERIC));
                query.push('=');
                query.extend(utf8_percent_encode(&value, NON_ALPHANUMERIC));
            } else if !unknown.contains(&name) {
                unknown.push(name);
            }
        }
        if !unknown.is_empty() {
            let takes = format!("this route takes {}", known.join(", "));
            return Err(AppError::Validation(
                unknown
                    .iter()
                    .map(|name| FieldError::new(name, format!("unknown parameter; {takes}")))
                    .collect(),
            ));
        }
        let uri: axum::http::Uri = format!("/?{query}")
            .parse()
            .map_err(|_| AppError::BadRequest("the query string cannot be read".into()))?;
        let axum::extract::Query(value) = axum::extract::Query::<T>::try_from_uri(&uri)?;
        Ok(Self { value, tenant_id })
    }
}

/// Collects field errors so one answer names every invalid field.
#[derive(Default)]
pub struct Validator {
    errors: Vec<FieldError>,
}

impl Validator {
    pub fn new() -> Self {
        Self::default()
    }

    /// A text whose trimmed length (in characters) must lie in `min..=max`.
    pub fn text(&mut self, field: &str, value: &str, min: usize, max: usize) -> &mut Self {
        let len = value.trim().chars().count();
        if len < min {
            let message = if min == 1 {
                "must not be empty".to_string()
            } else {
                format!("must be at least {min} characters")
            };
            self.error(field, message);
        } else if value.chars().count() > max {
            self.error(field, format!("must be at most {max} characters"));
        }
        self
    }

    pub fn optional_text(&mut self, field: &str, value: Option<&str>, max: usize) -> &mut Self {
        if let Some(value) = value {
            self.text(field, value, 0, max);
        }
        self
    }

    pub fn email(&mut self, field: &str, value: &str) -> &mut Self {
        if !is_plausible_email(value) {
            self.error(field, "must be an email address");
        }
        self
    }

    pub fn check(&mut self, ok: bool, field: &str, message: impl Into<String>) -> &mut Self {
        if !ok {
            self.error(field, message);
        }
        self
    }

    pub fn error(&mut self, field: &str, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, message));
    }

    pub fn finish(&mut self) -> AppResult<()> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(AppError::Validation(std::mem::take(&mut self.errors)))
        }
    }
}

/// Enough to catch typos; the real check is whether mail arrives.
pub fn is_plausible_email(value: &str) -> bool {
    let Some((local, domain)) = value.split_once('@') else {
        return false;
    };
    value.len() <= 254
        && !local.is_empty()
        && local.len() <= 64
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !value.chars().any(|c| c.is_whitespace() || c.is_control())
}

pub const DEFAULT_LIMIT: i64 = 100;
pub const MAX_LIMIT: i64 = 1000;

/// `limit` and `offset` (or its alias `skip`) of a list request.
#[derive(Debug, Clone, Copy, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Pagination {
    /// Rows per page, 1 to 1000 (default 100).
    pub limit: Option<i64>,
    /// Rows to skip (default 0).
    pub offset: Option<i64>,
    /// Alias of `offset`.
    pub skip: Option<i64>,
}

impl Pagination {
    /// The validated `(limit, offset)` of a view whose own parameters carry them.
    pub fn of(limit: Option<i64>, offset: Option<i64>, skip: Option<i64>) -> AppResult<(i64, i64)> {
        Self {
            limit,
            offset,
            skip,
        }
        .resolve()
    }

    /// The validated `(limit, offset)`.
    pub fn resolve(&self) -> AppResult<(i64, i64)> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        let offset = self.offset.or(self.skip).unwrap_or(0);
        let mut v = Validator::new();
        v.check(
            (1..=MAX_LIMIT).contains(&limit),
            "limit",
            format!("must be between 1 and {MAX_LIMIT}"),
        )
        .check(offset >= 0, "offset", "must not be negative")
        .finish()?;
        Ok((limit, offset))
    }
}

/// One page of a list, with the total count of matching rows (also in `X-Total-Count`).
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

impl<T> Page<T> {
    pub fn new(data: Vec<T>, total: i64, (limit, offset): (i64, i64)) -> Self {
        Self {
            data,
            total,
            limit,
            offset,
        }
    }
}

impl<T: Serialize> IntoResponse for Page<T> {
    fn into_response(self) -> Response {
        let total = self.total;
        json_with_total(self, total)
    }
}

/// A list's answer: `body` as JSON, with `total` also in the `X-Total-Count` header.
pub fn json_with_total(body: impl Serialize, total: i64) -> Response {
    let mut response = axum::Json(body).into_response();
    response
        .headers_mut()
        .insert("x-total-count", HeaderValue::from(total));
    response
}

/// The answer to a DELETE: 204 when a row went, 404 when there was none (or not the caller's).
pub fn deleted(rows_affected: u64, what: &'static str) -> AppResult<StatusCode> {
    if rows_affected == 0 {
        Err(AppError::NotFound(what))
    } else {
        Ok(StatusCode::NO_CONTENT)
    }
}

/// How long a client may wait for a slow dependency before we answer for it.
pub const DEPENDENCY_TIMEOUT: Duration = Duration::from_secs(3);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_checked_for_shape() {
        assert!(is_plausible_email("ada@example.com"));
        assert!(!is_plausible_email("ada.example.com"));
        assert!(!is_plausible_email("ada@localhost"));
        assert!(!is_plausible_email("a da@example.com"));
        assert!(!is_plausible_email(&format!(
            "{}@example.com",
            "a".repeat(300)
        )));
    }

    #[test]
    fn pagination_defaults_and_bounds() {
        assert_eq!(Pagination::default().resolve().unwrap(), (100, 0));
        let skip = Pagination {
            skip: Some(5),
            ..Default::default()
        };
        assert_eq!(skip.resolve().unwrap(), (100, 5));
        let bad = Pagination {
            limit: Some(0),
            offset: Some(-1),
            skip: None,
        };
        let Err(AppError::Validation(errors)) = bad.resolve() else {
            panic!("expected validation errors");
        };
        assert_eq!(errors.len(), 2);
    }
}
