#pragma once
/// \file cacheaside.hpp
/// Umbrella header: CacheAside<T>, its options, serializers, statistics and the client
/// boundary. The hiredis adapter is separate: include <cacheaside/hiredis_client.hpp> and link
/// cacheaside::hiredis.

#include <cacheaside/cache_aside.hpp>
#include <cacheaside/client.hpp>
#include <cacheaside/envelope.hpp>
#include <cacheaside/errors.hpp>
#include <cacheaside/options.hpp>
#include <cacheaside/serializer.hpp>
#include <cacheaside/stats.hpp>
#include <cacheaside/version.hpp>
