//! The generic store every kind is written through (kube's genericregistry.Store):
//! methods on `ApiServer`, one file per operation. The kind's own rules come from
//! `strategy` and `kinds`, admission from `rest::admission` and `dynamic_admission`;
//! bytes go through `codec` to `skiff_store`.

mod admission;
mod create;
mod delete;
mod meta;
mod read;
mod update;
