//! Calling what the component exports: `notifier`, `accounts` and `wasi:http/incoming-handler`,
//! as methods of [`Tenant`](crate::Tenant) that take and return the contract's plain types.

mod accounts;
mod incoming_handler;
mod notifier;
