//! Handler of the scheduler function (filled in next).
