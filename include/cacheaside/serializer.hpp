#pragma once
/// \file serializer.hpp
/// Forwarding header: serializers live in <cacheaside/codec/serializer.hpp>.

#include <cacheaside/codec/serializer.hpp>
