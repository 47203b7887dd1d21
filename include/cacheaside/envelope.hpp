#pragma once
/// \file envelope.hpp
/// Forwarding header: the record format lives in <cacheaside/codec/envelope.hpp>.

#include <cacheaside/codec/envelope.hpp>
