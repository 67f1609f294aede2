//! Handler of the api function (filled in next).
