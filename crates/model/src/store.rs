//! The objects of one kind as the sources last gave them, by namespace and
//! name.
//!
//! The model keeps one `Store` per kind. Its apply functions (`apply/`) are
//! the only writers: `insert` and `remove` are private to the crate, so
//! everything outside reads, through the graph's own methods, `Arc`s shared
//! with the store.

use std::collections::BTreeMap;
use std::sync::Arc;

/// An object's namespace and name.
pub type Name = (String, String);

#[derive(Debug, Clone)]
pub struct Store<T> {
    objects: BTreeMap<Name, Arc<T>>,
}

impl<T> Default for Store<T> {
    fn default() -> Self {
        Store {
            objects: BTreeMap::new(),
        }
    }
}

impl<T> Store<T> {
    pub fn get(&self, name: &Name) -> Option<&Arc<T>> {
        self.objects.get(name)
    }

    /// Every object, by namespace and name.
    pub fn values(&self) -> impl Iterator<Item = &Arc<T>> {
        self.objects.values()
    }

    /// The objects of `namespace`, by name.
    pub fn in_namespace(&self, namespace: &str) -> impl Iterator<Item = &Arc<T>> {
        let namespace = namespace.to_string();
        self.objects
            .range((namespace.clone(), String::new())..)
            .take_while(move |((ns, _), _)| *ns == namespace)
            .map(|(_, object)| object)
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// Stores `object`; returns what it replaces.
    pub(crate) fn insert(&mut self, name: Name, object: Arc<T>) -> Option<Arc<T>> {
        self.objects.insert(name, object)
    }

    /// Stores `new` under `name`, or forgets the object there when `new` is
    /// `None`. Returns what was there before, or `None` when nothing changed
    /// (`new` equals the stored object, or there was nothing to forget).
    pub(crate) fn replace(&mut self, name: &Name, new: Option<&T>) -> Option<Option<Arc<T>>>
    where
        T: Clone + PartialEq,
    {
        let Some(object) = new else {
            return self.objects.remove(name).map(Some);
        };
        match self.objects.get_mut(name) {
            Some(old) if **old == *object => None,
            Some(old) => Some(Some(std::mem::replace(old, Arc::new(object.clone())))),
            None => {
                self.objects.insert(name.clone(), Arc::new(object.clone()));
                Some(None)
            }
        }
    }

    pub(crate) fn remove(&mut self, name: &Name) -> Option<Arc<T>> {
        self.objects.remove(name)
    }
}
