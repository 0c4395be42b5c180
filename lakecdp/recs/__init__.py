"""Product recommendations: rules, item-to-item CF, category fallback, popularity; nightly build and offline evaluation."""
