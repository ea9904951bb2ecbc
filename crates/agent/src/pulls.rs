//! Image pulls shared by the node's tasks. Services start tasks in batches (RunTask places up
//! to ten at once, a deployment many more), and each task's supervisor pulls its images before
//! it creates containers, as ECS's default pull behaviour asks. A task that asks for an image
//! another task is already pulling joins that pull instead of starting its own: the answer is
//! the same (the registry is asked once, moments apart), and a burst of tasks costs one round
//! trip to the registry and one image inspection instead of one per task.
//!
//! A pull runs on its own tokio task, so a supervisor that goes away (its task was stopped)
//! does not abandon the pull for the others waiting on it.

use berth_runtime::{ImageRef, RegistryAuth, Runtime, RuntimeError, normalize_reference};
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

type Pending = Shared<BoxFuture<'static, Result<ImageRef, RuntimeError>>>;

/// The pulls in flight on this node, by image and credentials.
#[derive(Clone, Default)]
pub(crate) struct Pulls {
    inflight: Arc<Mutex<HashMap<Key, Pending>>>,
}

/// Pulls with different credentials are not joined: one login may see what another may not.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    reference: String,
    login: Option<(String, String, String)>,
}

impl Pulls {
    /// Pulls `image`, or waits for the pull of it already running with the same credentials.
    pub async fn pull(
        &self,
        runtime: &Runtime,
        image: &str,
        auth: Option<RegistryAuth>,
    ) -> Result<ImageRef, RuntimeError> {
        let key = Key {
            reference: normalize_reference(image),
            login: auth
                .as_ref()
                .map(|a| (a.server.clone(), a.username.clone(), a.password.clone())),
        };
        let pending = {
            let mut inflight = self.inflight.lock();
            match inflight.get(&key) {
                Some(p) => p.clone(),
                None => {
                    let job = tokio::spawn({
                        let runtime = runtime.clone();
                        let image = image.to_owned();
                        let inflight = self.inflight.clone();
                        let key = key.clone();
                        async move {
                            let result = runtime.pull(&image, auth.as_ref()).await;
                            // Later askers start a fresh pull: a finished one may be stale.
                            inflight.lock().remove(&key);
                            result
                        }
                    });
                    let pending = async move {
                        job.await.unwrap_or_else(|e| {
                            Err(RuntimeError::Other(format!(
                                "the pull was interrupted: {e}"
                            )))
                        })
                    }
                    .boxed()
                    .shared();
                    inflight.insert(key, pending.clone());
                    pending
                }
            }
        };
        pending.await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_runtime::{Call, FakeRuntime};

    fn pulls_of(calls: &[Call]) -> usize {
        calls
            .iter()
            .filter(|c| matches!(c, Call::Pull { .. }))
            .count()
    }

    #[tokio::test]
    async fn concurrent_pulls_of_one_image_share_one_pull_and_later_ones_pull_again() {
        let fake = FakeRuntime::new();
        let runtime = Runtime::Fake(fake.clone());
        let pulls = Pulls::default();
        let all = futures_util::future::join_all(
            (0..10).map(|_| pulls.pull(&runtime, "127.0.0.1:4566/app:1", None)),
        )
        .await;
        assert!(all.iter().all(Result::is_ok), "{all:?}");
        assert_eq!(pulls_of(&fake.calls()), 1, "{:?}", fake.calls());
        // Once that pull is over, the next ask goes to the registry again.
        pulls
            .pull(&runtime, "127.0.0.1:4566/app:1", None)
            .await
            .expect("pull");
        assert_eq!(pulls_of(&fake.calls()), 2);
    }

    #[tokio::test]
    async fn pulls_with_other_credentials_or_images_are_not_joined() {
        let fake = FakeRuntime::new();
        let runtime = Runtime::Fake(fake.clone());
        let pulls = Pulls::default();
        let login = |user: &str| RegistryAuth {
            username: user.into(),
            password: "p".into(),
            server: "registry.example.com".into(),
        };
        let (a, b, c) = tokio::join!(
            pulls.pull(&runtime, "registry.example.com/app:1", Some(login("a"))),
            pulls.pull(&runtime, "registry.example.com/app:1", Some(login("b"))),
            pulls.pull(&runtime, "registry.example.com/other:1", Some(login("a"))),
        );
        assert!(a.is_ok() && b.is_ok() && c.is_ok());
        assert_eq!(pulls_of(&fake.calls()), 3);
    }
}
