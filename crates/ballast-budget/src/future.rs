//! The response future of [`BudgetGuard`](crate::BudgetGuard).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use ballast_classify::{BoxError, InspectBody};
use ballast_cost::Rate;
use pin_project_lite::pin_project;

use crate::SpendStore;
use crate::guard::Held;

/// The boxed path: reserve, call and settle against a store that must be awaited.
type Boxed<R> = Pin<Box<dyn Future<Output = Result<http::Response<R>, BoxError>> + Send>>;

pin_project! {
    /// The future of [`BudgetGuard`](crate::BudgetGuard): the call and its settlement.
    pub struct ResponseFuture<F, St, R>
    where
        St: SpendStore,
    {
        #[pin]
        kind: Kind<F, St, R>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, St, R>
    where
        St: SpendStore,
    {
        /// Reserved at once: the call, then its settlement at once.
        Direct {
            #[pin]
            inner: F,
            held: Option<Held<St>>,
            rate: Rate,
            prompt_bound: u64,
        },
        /// Refused before the call.
        Refused { error: Option<BoxError> },
        /// A store that is awaited.
        Boxed { future: Boxed<R> },
    }
}

impl<F, St: SpendStore, R> ResponseFuture<F, St, R> {
    pub(crate) fn direct(inner: F, held: Option<Held<St>>, rate: Rate, prompt_bound: u64) -> Self {
        Self {
            kind: Kind::Direct {
                inner,
                held,
                rate,
                prompt_bound,
            },
        }
    }

    pub(crate) fn refused(error: BoxError) -> Self {
        Self {
            kind: Kind::Refused { error: Some(error) },
        }
    }

    pub(crate) fn boxed(future: Boxed<R>) -> Self {
        Self {
            kind: Kind::Boxed { future },
        }
    }
}

impl<F, St: SpendStore, R> std::fmt::Debug for ResponseFuture<F, St, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, E, St, R> Future for ResponseFuture<F, St, R>
where
    F: Future<Output = Result<http::Response<R>, E>>,
    E: Into<BoxError>,
    St: SpendStore,
    R: InspectBody,
{
    type Output = Result<http::Response<R>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Direct {
                inner,
                held,
                rate,
                prompt_bound,
            } => {
                let mut result = ready!(inner.poll(cx)).map_err(Into::into);
                if let Some(held) = held.take() {
                    held.settle_now(rate, *prompt_bound, &mut result);
                }
                Poll::Ready(result)
            }
            KindProj::Refused { error } => Poll::Ready(Err(error
                .take()
                .unwrap_or_else(|| "budget future polled after completion".into()))),
            KindProj::Boxed { future } => future.as_mut().poll(cx),
        }
    }
}
