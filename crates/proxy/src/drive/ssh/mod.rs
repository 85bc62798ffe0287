//! SSH listeners: the gateway terminates SSH, authenticates the user (its own user list or
//! the authorizer), routes by the user, logs in upstream with credentials it holds over the
//! ordinary dial step, and relays the channels the route allows.

mod gate;
mod serve;

pub(crate) use serve::serve;
