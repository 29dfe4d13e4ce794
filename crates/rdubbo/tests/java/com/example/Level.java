package com.example;

/** Membership level of a {@link User}; travels as a Hessian enum (class name + constant name). */
public enum Level {
    BRONZE,
    SILVER,
    GOLD
}
