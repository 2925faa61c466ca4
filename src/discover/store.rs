//! What one watch holds: its objects, compact, by namespace and name.
//!
//! kube-runtime's reflector store would key each object by an `ObjectRef` (four more strings) and
//! keep it beside a whole `ObjectMeta`: about 450 B per object before any of its content. This
//! store keeps one pointer per object, hashed by the namespace and name the object itself holds,
//! and follows the watcher's events as the reflector does: a (re)list is gathered aside and
//! replaces the contents whole once complete, so an object deleted while the watch was down is
//! gone after the relist.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use kube::runtime::watcher::Event;

use super::compact::{Arriving, Compact};

/// An object, compared and hashed by namespace and name only.
struct ByName<K>(Arc<Compact<K>>);

impl<K> PartialEq for ByName<K> {
    fn eq(&self, other: &Self) -> bool {
        self.0.same_object(&other.0)
    }
}

impl<K> Eq for ByName<K> {}

impl<K> Hash for ByName<K> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.namespace().hash(state);
        self.0.name().hash(state);
    }
}

struct State<K> {
    objects: HashSet<ByName<K>>,
    /// A list under way: replaces `objects` when it is done.
    listing: HashSet<ByName<K>>,
    listed: bool,
}

/// One watch's objects; clones share them.
pub struct Store<K> {
    state: Arc<Mutex<State<K>>>,
}

impl<K> Clone for Store<K> {
    fn clone(&self) -> Self {
        Store {
            state: self.state.clone(),
        }
    }
}

impl<K> Default for Store<K> {
    fn default() -> Self {
        Store {
            state: Arc::new(Mutex::new(State {
                objects: HashSet::new(),
                listing: HashSet::new(),
                listed: false,
            })),
        }
    }
}

/// What an event did to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The contents changed.
    Changed,
    /// A list is being gathered: the contents are as before.
    Gathering,
    /// A list completed and replaced the contents.
    Listed,
}

impl<K> Store<K> {
    fn lock(&self) -> MutexGuard<'_, State<K>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn apply(&self, event: Event<Arriving<K>>) -> Applied {
        let held = |object: Arriving<K>| ByName(Arc::new(object.into_compact()));
        let mut state = self.lock();
        match event {
            Event::Apply(object) => {
                state.objects.replace(held(object));
                Applied::Changed
            }
            Event::Delete(object) => {
                state.objects.remove(&held(object));
                Applied::Changed
            }
            Event::Init => {
                state.listing = HashSet::new();
                Applied::Gathering
            }
            Event::InitApply(object) => {
                state.listing.replace(held(object));
                Applied::Gathering
            }
            Event::InitDone => {
                let mut listed = std::mem::take(&mut state.listing);
                listed.shrink_to_fit();
                state.objects = listed;
                state.listed = true;
                Applied::Listed
            }
        }
    }

    /// Whether a first list has completed.
    pub fn listed(&self) -> bool {
        self.lock().listed
    }

    /// Every object held now.
    pub fn state(&self) -> Vec<Arc<Compact<K>>> {
        self.lock().objects.iter().map(|o| o.0.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::api::apps::v1::Deployment;
    use serde_json::json;

    fn object(name: &str, version: &str) -> Arriving<Deployment> {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "shop", "resourceVersion": version},
        }))
        .unwrap()
    }

    fn held(store: &Store<Deployment>) -> Vec<(String, String)> {
        let mut held: Vec<(String, String)> = store
            .state()
            .iter()
            .map(|o| {
                (
                    o.name().unwrap().to_owned(),
                    o.resource_version().unwrap().to_owned(),
                )
            })
            .collect();
        held.sort();
        held
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_list_replaces_the_contents_only_once_complete() {
        let store = Store::default();
        assert_eq!(store.apply(Event::Init), Applied::Gathering);
        assert_eq!(
            store.apply(Event::InitApply(object("web", "1"))),
            Applied::Gathering
        );
        assert!(held(&store).is_empty());
        assert!(!store.listed());
        assert_eq!(store.apply(Event::InitDone), Applied::Listed);
        assert!(store.listed());
        assert_eq!(held(&store), pairs(&[("web", "1")]));

        // Watch events change one object each; a newer version replaces the one held.
        store.apply(Event::Apply(object("api", "2")));
        store.apply(Event::Apply(object("web", "3")));
        assert_eq!(held(&store), pairs(&[("api", "2"), ("web", "3")]));
        store.apply(Event::Delete(object("api", "4")));
        assert_eq!(held(&store), pairs(&[("web", "3")]));

        // A relist after the watch was down: what it does not list is gone, but only once done.
        store.apply(Event::Init);
        store.apply(Event::InitApply(object("db", "9")));
        assert_eq!(held(&store), pairs(&[("web", "3")]));
        store.apply(Event::InitDone);
        assert_eq!(held(&store), pairs(&[("db", "9")]));
    }

    #[test]
    fn objects_of_the_same_name_in_two_namespaces_are_two_objects() {
        let store = Store::default();
        store.apply(Event::Apply(object("web", "1")));
        let other: Arriving<Deployment> = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "blog", "resourceVersion": "2"},
        }))
        .unwrap();
        store.apply(Event::Apply(other));
        assert_eq!(store.state().len(), 2);
    }

    #[test]
    fn an_object_costs_one_pointer_in_the_store() {
        assert_eq!(
            std::mem::size_of::<ByName<Deployment>>(),
            std::mem::size_of::<usize>()
        );
        // The compact form with its identity, without any ObjectMeta.
        assert!(std::mem::size_of::<Compact<Deployment>>() <= 112);
    }
}
